"""The read path on real Kafka, PostgreSQL and Ray: killed runners, replay under load, poison.

Each test gets a database of its own (so projection schemas and the runtime tables never
meet another engineer's) and a topic of its own.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest
import ray
from psycopg_pool import AsyncConnectionPool

from eventray.aggregates import ACCOUNT
from eventray.aggregates.account import Deposit, FreezeAccount, MoneyDeposited, MoneyWithdrawn, OpenAccount, Withdraw
from eventray.platform.composition import Runtime
from eventray.platform.eventlog import DecodedRecord
from eventray.platform.migrations import migrate
from eventray.platform.projections.actor import NAMESPACE, runner_group, runner_name, stop_topic_runners
from eventray.platform.projections.cli import status
from eventray.platform.projections.host import host_group, place_hosts
from eventray.platform.projections.reads import projection_status
from eventray.platform.projections.replay import replay
from eventray.platform.projections.runner import FaultPoint
from eventray.platform.projections.store import ProjectionStore
from eventray.platform.runtime.shards import start_shards, stop_shards
from eventray.platform.settings import with_database
from eventray.projections import queries

pytestmark = pytest.mark.integration


@pytest.fixture()
def rt(stack_settings):
    db = f"it_proj_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(stack_settings.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = with_database(stack_settings.dsn, db)
    s = stack_settings.model_copy(update={
        "database_url": dsn, "topic": f"it-proj-{uuid.uuid4().hex[:8]}", "partitions": 2, "shards": 1,
    })
    migrate(dsn)
    rt = Runtime.load(s)
    rt.connect_ray()
    yield rt
    stop_topic_runners(rt)
    stop_shards(rt)
    with psycopg.connect(stack_settings.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# --- the fold of the log, independent of the projection code --------------------------------


def fold_log(rt) -> tuple[dict[str, tuple], list[tuple]]:
    """``({account: (owner, currency, balance, status, version)}, sorted activity rows)``."""
    states: dict[str, object] = {}
    versions: dict[str, int] = {}
    activity = []
    for p in range(rt.settings.partitions):
        for r in rt.read_decoded(p, 0):
            if not isinstance(r, DecodedRecord) or r.envelope.aggregate_type != "Account":
                continue
            agg = r.envelope.aggregate_id
            states[agg] = ACCOUNT.evolve(states.get(agg), r.event)
            versions[agg] = r.envelope.version
            if isinstance(r.event, (MoneyDeposited, MoneyWithdrawn)):
                kind = "deposit" if isinstance(r.event, MoneyDeposited) else "withdrawal"
                activity.append((agg, r.envelope.version, kind, r.event.amount, r.event.balance_after, p, r.offset))
    accounts = {a: (s.owner_id, s.currency, s.balance, s.status.value, versions[a]) for a, s in states.items()}
    return accounts, sorted(activity)


def read_model(rt, name: str) -> list[tuple]:
    store = ProjectionStore(rt.settings.dsn)
    try:
        version = store.current_version(name)
        schema = store.version_info(name, version).schema
        if name == "account_balances":
            sql = f'SELECT account_id, owner_id, currency, balance, status, version FROM "{schema}".accounts'
        else:
            sql = (f'SELECT account_id, seq, kind, amount, balance_after, log_partition, log_offset '
                   f'FROM "{schema}".activity')
        return sorted(store.conn.execute(sql).fetchall())
    finally:
        store.close()


def wait_caught_up(rt, name: str, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        row = next(r for r in status(rt) if r["name"] == name and r["current"])
        if row["lag"] == 0:
            return row
        assert time.monotonic() < deadline, f"{name} still lags: {row}"
        time.sleep(0.1)


def assert_equals_fold(rt) -> None:
    accounts, activity = fold_log(rt)
    wait_caught_up(rt, "account_balances")
    wait_caught_up(rt, "account_activity")
    assert read_model(rt, "account_balances") == sorted((a, *v) for a, v in accounts.items())
    assert read_model(rt, "account_activity") == activity


async def send_ok(bus, commands) -> None:
    outs = await bus.send_many(commands)
    bad = [o for o in outs if not o.ok]
    assert not bad, bad[:3]


class FlowAndWatch:
    """Commands flowing and the partitions' owners watched (every 50 ms) until :meth:`stop`.

    ``claims()`` returns ``{owner index: partitions}`` of the owners that answer now; a
    listing where a partition has two owners is kept.
    """

    def __init__(self, bus, rng: random.Random, accounts: list[str], claims) -> None:
        self._stop = asyncio.Event()
        self._doubles: list[dict] = []
        self._tasks = [asyncio.ensure_future(self._load(bus, rng, accounts)),
                       asyncio.ensure_future(self._watch(claims))]

    async def _load(self, bus, rng, accounts) -> int:
        sent = 0
        while not self._stop.is_set():
            await send_ok(bus, some_commands(rng, accounts, 20))
            sent += 20
        return sent

    async def _watch(self, claims) -> None:
        while not self._stop.is_set():
            now = await asyncio.to_thread(claims)
            owned = [p for parts in now.values() for p in parts]
            if len(owned) != len(set(owned)):
                self._doubles.append(now)
            await asyncio.sleep(0.05)

    async def stop(self) -> tuple[int, list[dict]]:
        """``(commands sent, listings with a partition owned twice)``."""
        self._stop.set()
        sent, _ = await asyncio.gather(*self._tasks)
        return sent, self._doubles


def some_commands(rng: random.Random, accounts: list[str], n: int) -> list:
    out = []
    for _ in range(n):
        a = rng.choice(accounts)
        out.append(Deposit(aggregate_id=a, amount=rng.randint(1, 1000)))
    return out


# --- killed runner --------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["before_commit", "after_commit"])
async def test_killed_runner_resumes_without_gap_or_double_apply(rt, stage, tmp_path: Path) -> None:
    start_shards(rt)
    bus = rt.command_bus()
    rng = random.Random(11)
    accounts = [f"k-{i}" for i in range(60)]
    await send_ok(bus, [OpenAccount(aggregate_id=a, owner_id=f"o{i % 7}", currency="EUR") for i, a in enumerate(accounts)])
    await send_ok(bus, some_commands(rng, accounts, 600))
    await send_ok(bus, [Withdraw(aggregate_id=a, amount=1) for a in accounts[:20]])

    markers = {}
    for name in ("account_balances", "account_activity"):
        markers[name] = tmp_path / f"{name}.crashed"
        fault = {0: FaultPoint(stage=stage, marker=str(markers[name]), batch=1)}
        report = replay(rt, name, fault=fault, timeout_s=60)
        assert report.new_version == 1
        assert markers[name].exists(), "the fault point never fired"
        handle = ray.get_actor(runner_name(rt.topic, name, 1, 0), namespace=NAMESPACE)
        assert ray.get(handle.describe.remote())["running"]
    assert_equals_fold(rt)

    # the restarted runners are the live ones: new events still arrive exactly once
    await send_ok(bus, some_commands(rng, accounts, 300) + [FreezeAccount(aggregate_id=accounts[0], reason="audit")])
    assert_equals_fold(rt)
    assert all(r["dead_letters"] == 0 for r in status(rt))


# --- replay under load ----------------------------------------------------------------------


async def test_replay_under_load_switches_atomically(rt) -> None:
    start_shards(rt)
    bus = rt.command_bus()
    rng = random.Random(5)
    accounts = [f"r-{i}" for i in range(80)]
    await send_ok(bus, [OpenAccount(aggregate_id=a, owner_id=f"o{i % 4}", currency="EUR") for i, a in enumerate(accounts)])
    await send_ok(bus, some_commands(rng, accounts, 2000))
    assert (await asyncio.to_thread(replay, rt, "account_balances")).new_version == 1
    await asyncio.to_thread(place_hosts, rt, names=["account_balances"])  # the live version on its host

    stop = asyncio.Event()
    sent = 0

    async def load() -> None:
        nonlocal sent
        while not stop.is_set():
            batch = some_commands(rng, accounts, 100)
            await send_ok(bus, batch)
            sent += len(batch)
            await asyncio.sleep(0.01)

    polls = 0
    seen_versions: dict[str, int] = defaultdict(int)

    async def poll(pool) -> None:
        nonlocal polls
        while not stop.is_set():
            rows = await queries.accounts_by_ids(pool, accounts)
            assert all(r is not None for r in rows), "an account vanished: partial table"
            for r in rows:
                assert r.version >= seen_versions[r.account_id], f"{r.account_id} went back in time"
                seen_versions[r.account_id] = r.version
            totals = [t for o in range(4) for t in await queries.owner_totals(pool, f"o{o}")]
            assert sum(t.accounts for t in totals) == len(accounts)
            polls += 1
            await asyncio.sleep(0.005)

    async with AsyncConnectionPool(rt.settings.dsn, min_size=1, max_size=4) as pool:
        tasks = [asyncio.create_task(load()), asyncio.create_task(poll(pool))]
        await asyncio.sleep(0.3)
        report = await asyncio.to_thread(replay, rt, "account_balances", timeout_s=90)
        await asyncio.sleep(0.3)  # keep loading and reading after the switch
        stop.set()
        await asyncio.gather(*tasks)
        assert report.old_version == 1 and report.new_version == 2
        [host] = [ray.get(h.describe.remote()) for h in host_group(rt.topic, "main").handles().values()]
        assert sorted(host["projections"]) == ["account_balances v2"]  # the host took the new version on
        assert sent > 0 and polls > 10
        assert [s.version for s in await projection_status(pool) if s.name == "account_balances"] == [2]
    with psycopg.connect(rt.settings.dsn) as conn:
        assert conn.execute("SELECT to_regnamespace('proj_account_balances_v1')").fetchone()[0] is None
    accounts_fold, _ = fold_log(rt)
    wait_caught_up(rt, "account_balances")
    assert read_model(rt, "account_balances") == sorted((a, *v) for a, v in accounts_fold.items())


# --- poison event ---------------------------------------------------------------------------


async def test_poison_event_is_dead_lettered_and_the_host_goes_on(rt, monkeypatch, capsys) -> None:
    from kafka import KafkaProducer

    from eventray.platform.cli import main

    start_shards(rt)
    bus = rt.command_bus()
    accounts = [f"p-{i}" for i in range(20)]
    await send_ok(bus, [OpenAccount(aggregate_id=a, owner_id="o", currency="EUR") for a in accounts])
    replay(rt, "account_activity")
    place_hosts(rt, names=["account_activity"])  # its host applies what follows

    poison_key = next(a for a in accounts if bus.partition_of(a) == 0)
    from eventray.platform.tls import kafka_options

    producer = KafkaProducer(bootstrap_servers=rt.settings.kafka_address,
                             transactional_id=f"poison-{uuid.uuid4().hex[:8]}", acks="all",
                             **kafka_options(rt.settings.tls_files(), "kafka-python"))
    producer.init_transactions()
    producer.begin_transaction()
    meta = producer.send(rt.topic, key=poison_key.encode(), value=b"\x93garbage\xff", partition=0).get(10)
    producer.commit_transaction()
    producer.close()

    await send_ok(bus, [Deposit(aggregate_id=a, amount=5) for a in accounts])
    wait_caught_up(rt, "account_activity")
    _, activity = fold_log(rt)
    assert len(activity) == len(accounts)
    assert read_model(rt, "account_activity") == activity  # events after the poison applied

    store = ProjectionStore(rt.settings.dsn)
    [dead] = store.dead_letters("account_activity", 1)
    store.close()
    assert (dead.partition, dead.offset, dead.raw) == (0, meta.offset, b"\x93garbage\xff")
    assert "bad envelope" in dead.reason

    monkeypatch.setenv("EVENTRAY_DATABASE_URL", rt.settings.dsn)
    monkeypatch.setenv("EVENTRAY_TOPIC", rt.topic)  # the CLI lists the projections of the app's topic
    assert main(["projections"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "account_activity" in ln)
    assert "live" in line and "│ 1 " in line.replace("  ", " "), out


# --- runner actors scale apart from partitions ----------------------------------------------


def runner_claims(rt, name: str, version: int) -> dict[int, list[int]]:
    """``{runner index: partitions}`` of the runner actors that answer right now."""
    return claims(runner_group(rt.topic, name, version))


def claims(group) -> dict[int, list[int]]:
    """``{actor index: partitions}`` of the actors of ``group`` that answer right now."""
    out = {}
    for index, actor in group.live().items():
        try:
            out[index] = ray.get(ray.get_actor(actor, namespace=NAMESPACE).owned.remote(), timeout=2)["partitions"]
        except Exception:  # noqa: BLE001 - starting or being removed: applies nothing
            continue
    return out


async def test_runner_count_scales_4_2_1_4_while_events_flow(rt) -> None:
    from eventray.platform.projections.actor import start_runners

    s = rt.with_settings(partitions=4, shards=2, projection_runners=0)
    start_shards(s)
    bus = s.command_bus()
    rng = random.Random(5)
    accounts = [f"r-{i}" for i in range(80)]
    await send_ok(bus, [OpenAccount(aggregate_id=a, owner_id="o", currency="EUR") for a in accounts])
    await asyncio.to_thread(replay, s, "account_balances", timeout_s=60)
    version = ProjectionStore(s.settings.dsn).current_version("account_balances")
    assert runner_claims(s, "account_balances", version) == {0: [0], 1: [1], 2: [2], 3: [3]}

    flow = FlowAndWatch(bus, rng, accounts, lambda: runner_claims(s, "account_balances", version))
    steps = [(2, {0: [0, 2], 1: [1, 3]}, 4, 2), (1, {0: [0, 1, 2, 3]}, 2, 1), (0, {i: [i] for i in range(4)}, 1, 4)]
    for runners, owners, removed, started in steps:
        await asyncio.sleep(1.0)
        changes: list[str] = []
        step = s.with_settings(projection_runners=runners)
        await asyncio.to_thread(start_runners, step, "account_balances", version, changes=changes)
        assert sum(c.startswith("removed") for c in changes) == removed, changes
        assert sum(c.startswith("started") for c in changes) == started, changes
        assert runner_claims(s, "account_balances", version) == owners
        again: list[str] = []
        await asyncio.to_thread(start_runners, step, "account_balances", version, changes=again)
        assert again == []  # idempotent
    await asyncio.sleep(1.0)
    sent, doubles = await flow.stop()

    assert sent > 100
    assert not doubles, f"a partition had two runners: {doubles[:3]}"
    accounts_now, _ = fold_log(s)
    wait_caught_up(s, "account_balances")
    assert read_model(s, "account_balances") == sorted((a, *v) for a, v in accounts_now.items())


async def test_a_second_runner_of_a_partition_is_refused_by_the_stored_offset(rt) -> None:
    from eventray.platform.eventlog.reader import PartitionReader
    from eventray.platform.projections.actor import build_runner
    from eventray.platform.projections.enrich import StaleRunner

    start_shards(rt)
    bus = rt.command_bus()
    accounts = [f"z-{i}" for i in range(30)]
    await send_ok(bus, [OpenAccount(aggregate_id=a, owner_id="o", currency="EUR") for a in accounts])
    await asyncio.to_thread(replay, rt, "account_balances", timeout_s=60)
    version = ProjectionStore(rt.settings.dsn).current_version("account_balances")
    current = ProjectionStore(rt.settings.dsn).current_versions
    assert current(rt.topic, ["account_balances", "alerts"]) == {"account_balances": version}
    assert current("another-topic", ["account_balances"]) == {}
    stop_topic_runners(rt)
    await send_ok(bus, [Deposit(aggregate_id=a, amount=7) for a in accounts])

    first = build_runner(rt, "account_balances", version, 0)
    second = build_runner(rt, "account_balances", version, 0)
    stored = ProjectionStore(rt.settings.dsn).load_offsets("account_balances", version)[0]
    first.next_offset = second.next_offset = stored  # both resumed from the same stored offset
    with PartitionReader(bootstrap=rt.settings.kafka_address, topic=rt.topic, partition=0,
                         tls=rt.settings.tls_files()) as reader:
        end = reader.last_stable_offset()
        batch = [r for b in reader.read(stored, until=end) for r in b]
    assert batch, "partition 0 got no deposits"

    assert first.process(batch)
    with pytest.raises(StaleRunner):
        second.process(batch)  # its writes roll back with the refused offset
    assert ProjectionStore(rt.settings.dsn).load_offsets("account_balances", version)[0] == batch[-1][0] + 1
    accounts_now, _ = fold_log(rt)
    on_p0 = {r.envelope.aggregate_id for r in rt.read_decoded(0, 0) if isinstance(r, DecodedRecord)}
    model = {row[0]: row for row in read_model(rt, "account_balances")}
    for a in on_p0:
        assert model[a] == (a, *accounts_now[a]), a  # applied once, not twice


def test_a_switch_fences_the_old_versions_writers(stack_settings) -> None:
    """After the switch no batch of the old version commits: its stored offset is no longer the one
    its runner resumed from, so a reader still on the old pointer never sees past the new version."""
    from eventray.platform.projections.enrich import StaleRunner

    migrate(stack_settings.dsn)
    store = ProjectionStore(stack_settings.dsn)
    name = f"fence_{uuid.uuid4().hex[:8]}"
    try:
        old = store.create_version(name, ddl=lambda s: "", topic="t-fence", partitions=1, definition_version=1)
        assert store.switch(name, old.version)
        store.apply_batch(name=name, version=old.version, schema=old.schema, partition=0, next_offset=10,
                          applied=10, writes=None, expected_offset=0)
        new = store.create_version(name, ddl=lambda s: "", topic="t-fence", partitions=1, definition_version=1)
        assert not store.switch(name, new.version)  # behind the old one: refused
        store.apply_batch(name=name, version=new.version, schema=new.schema, partition=0, next_offset=10,
                          applied=10, writes=None, expected_offset=0)
        assert store.switch(name, new.version)
        with pytest.raises(StaleRunner):
            store.apply_batch(name=name, version=old.version, schema=old.schema, partition=0, next_offset=12,
                              applied=2, writes=None, expected_offset=10)
        assert store.load_offsets(name, old.version) == {0: -11}  # retired at offset 10
        with store.batch_transaction(name=name, version=old.version, partition=0) as (_cur, stored):
            assert stored == -11  # an enriching batch sees it is not where it resumed
        store.apply_batch(name=name, version=new.version, schema=new.schema, partition=0, next_offset=12,
                          applied=2, writes=None, expected_offset=10)
        assert store.load_offsets(name, new.version) == {0: 12}
    finally:
        for v in (2, 1):
            try:
                store.drop_version(name, v)
            except Exception:  # noqa: BLE001 - the current one is refused; the rest of the cleanup goes on
                pass
        store.close()
