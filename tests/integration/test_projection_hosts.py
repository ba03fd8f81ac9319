"""Projection hosts on real Kafka, PostgreSQL and Ray: one read feeds every projection.

A host killed inside a batch and right after a commit, one projection raising on every
event beside two healthy ones, a replay handed over to the hosts, and the host count
rescaled 4 -> 2 -> 1 -> 4 while events flow. Each test has a database and a topic of its own.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
import ray
from test_projections import FlowAndWatch, assert_equals_fold, claims, fold_log, read_model, rt, send_ok, some_commands, wait_caught_up

from eventray.aggregates.account import Deposit, OpenAccount
from eventray.aggregates.user import RegisterUser
from eventray.platform.projections.actor import runner_group
from eventray.platform.projections.host import HostFault, host_group, place_hosts
from eventray.platform.projections.replay import replay
from eventray.platform.projections.runner import FaultPoint
from eventray.platform.projections.store import ProjectionStore
from eventray.platform.runtime.shards import start_shards

pytestmark = pytest.mark.integration

__all__ = ["rt"]  # the fixture, shared with test_projections

PLAIN = ["account_balances", "account_activity", "user_directory"]


def hosted(rt, group: str = "main") -> dict[int, dict]:
    """``{host index: describe()}`` of the live hosts of ``group``."""
    return {i: ray.get(h.describe.remote(), timeout=10) for i, h in host_group(rt.topic, group).handles().items()}


async def opened(rt, n: int, prefix: str) -> tuple[object, list[str]]:
    start_shards(rt)
    bus = rt.command_bus()
    accounts = [f"{prefix}-{i}" for i in range(n)]
    await send_ok(bus, [OpenAccount(aggregate_id=a, owner_id=f"o{i % 5}", currency="EUR")
                        for i, a in enumerate(accounts)])
    return bus, accounts


async def test_one_host_applies_every_projection_and_the_builders_give_way(rt) -> None:
    bus, accounts = await opened(rt, 40, "h")
    await send_ok(bus, some_commands(random.Random(3), accounts, 300))
    for name in PLAIN:  # a replay without hosts leaves its builders live
        await asyncio.to_thread(replay, rt, name, timeout_s=60)
    versions = ProjectionStore(rt.settings.dsn).current_versions(rt.topic, PLAIN)
    assert all(runner_group(rt.topic, n, v).live() for n, v in versions.items())

    changes: list[str] = []
    await asyncio.to_thread(place_hosts, rt, names=PLAIN, changes=changes)
    assert not any(runner_group(rt.topic, n, v).live() for n, v in versions.items()), changes
    [host] = hosted(rt).values()
    assert host["partitions"] == [0, 1] and host["running"]
    assert sorted(host["projections"]) == sorted(f"{n} v{v}" for n, v in versions.items())

    await send_ok(bus, some_commands(random.Random(4), accounts, 300))
    assert_equals_fold(rt)
    wait_caught_up(rt, "user_directory")
    again: list[str] = []
    await asyncio.to_thread(place_hosts, rt, names=PLAIN, changes=again)
    assert again == []  # idempotent

    # a replay on a hosted stack: built beside by its own runners, then the hosts take it on
    report = await asyncio.to_thread(replay, rt, "account_balances", timeout_s=60)
    assert report.new_version == versions["account_balances"] + 1
    assert not runner_group(rt.topic, "account_balances", report.new_version).live()
    [host] = hosted(rt).values()
    assert f"account_balances v{report.new_version}" in host["projections"]
    assert f"account_balances v{report.old_version}" not in host["projections"]
    await send_ok(bus, [Deposit(aggregate_id=a, amount=3) for a in accounts])
    assert_equals_fold(rt)


async def test_a_projection_raising_on_every_event_leaves_the_others_at_lag_0(rt) -> None:
    bus, accounts = await opened(rt, 30, "f")
    for name in PLAIN:
        await asyncio.to_thread(replay, rt, name, timeout_s=60)
    await asyncio.to_thread(place_hosts, rt, names=PLAIN, fault=HostFault(failing=["user_directory"]))
    rng = random.Random(8)
    for burst in range(4):  # each burst is applied by the healthy two at once, whatever user_directory does
        users = [RegisterUser(aggregate_id=f"u-{burst}-{i}", name=f"User {i}", email=f"u{burst}.{i}@example.org")
                 for i in range(10)]
        await send_ok(bus, some_commands(rng, accounts, 100) + users)
        for name in ("account_balances", "account_activity"):
            wait_caught_up(rt, name, timeout_s=10)
    assert_equals_fold(rt)
    [host] = hosted(rt).values()
    failing = next(h for k, h in host["projections"].items() if k.startswith("user_directory"))
    assert failing["dead_letters"] > 0 and failing["parked"] is None
    healthy = [h for k, h in host["projections"].items() if not k.startswith("user_directory")]
    assert all(h["dead_letters"] == 0 for h in healthy)
    store = ProjectionStore(rt.settings.dsn)
    version = store.current_version("user_directory")
    dead = store.dead_letters("user_directory", version)
    store.close()
    assert dead and all("raises on every event" in d.reason for d in dead)


async def test_a_projection_whose_batches_fail_is_parked_and_listed(rt, monkeypatch, capsys) -> None:
    from eventray.platform.cli import main

    bus, accounts = await opened(rt, 30, "b")
    for name in PLAIN[:2]:
        await asyncio.to_thread(replay, rt, name, timeout_s=60)
    await asyncio.to_thread(place_hosts, rt, names=PLAIN[:2], fault=HostFault(broken=["account_activity"]))
    await send_ok(bus, some_commands(random.Random(9), accounts, 200))
    deadline = time.monotonic() + 20
    while True:
        [host] = hosted(rt).values()
        parked = next(h for k, h in host["projections"].items() if k.startswith("account_activity"))["parked"]
        if parked:
            break
        assert time.monotonic() < deadline, host
        await asyncio.sleep(0.1)
    assert "every batch of this projection fails" in parked
    accounts_now, _ = fold_log(rt)
    wait_caught_up(rt, "account_balances", timeout_s=10)  # the other projection goes on
    assert read_model(rt, "account_balances") == sorted((a, *v) for a, v in accounts_now.items())

    monkeypatch.setenv("EVENTRAY_DATABASE_URL", rt.settings.dsn)
    monkeypatch.setenv("EVENTRAY_TOPIC", rt.topic)
    assert main(["projections"]) == 0
    out = capsys.readouterr().out
    line = " ".join(ln for ln in out.splitlines() if "account_activity" in ln or "parked" in ln)
    assert "stopped" in line and "parked on its host" in line, out


@pytest.mark.parametrize("stage", ["before_commit", "after_commit"])
async def test_a_host_killed_in_a_batch_resumes_without_gap_or_double_apply(rt, stage, tmp_path: Path) -> None:
    bus, accounts = await opened(rt, 40, "k")
    rng = random.Random(12)
    for name in PLAIN[:2]:
        await asyncio.to_thread(replay, rt, name, timeout_s=60)
    marker = tmp_path / "host.crashed"
    fault = HostFault(crash={"account_activity": FaultPoint(stage=stage, marker=str(marker), batch=2)})
    await asyncio.to_thread(place_hosts, rt, names=PLAIN[:2], fault=fault)
    [pid] = [ray.get(h.pid.remote()) for h in host_group(rt.topic, "main").handles().values()]
    for _ in range(3):
        await send_ok(bus, some_commands(rng, accounts, 150))
        await asyncio.sleep(0.3)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, "the fault point never fired"
        await asyncio.sleep(0.1)
    assert_equals_fold(rt)  # the restarted host resumed from the stored offsets
    [handle] = host_group(rt.topic, "main").handles().values()
    assert ray.get(handle.pid.remote(), timeout=30) != pid
    await send_ok(bus, some_commands(rng, accounts, 150))
    assert_equals_fold(rt)


def host_claims(rt) -> dict[int, list[int]]:
    return claims(host_group(rt.topic, "main"))


async def test_hosts_rescale_4_2_1_4_while_events_flow(rt) -> None:
    s = rt.with_settings(partitions=4, shards=2, projection_hosts=0)
    bus, accounts = await opened(s, 60, "r")
    rng = random.Random(6)
    for name in PLAIN[:2]:
        await asyncio.to_thread(replay, s, name, timeout_s=60)
    await asyncio.to_thread(place_hosts, s, names=PLAIN[:2])
    assert host_claims(s) == {0: [0], 1: [1], 2: [2], 3: [3]}

    flow = FlowAndWatch(bus, rng, accounts, lambda: host_claims(s))
    for hosts, owners in [(2, {0: [0, 2], 1: [1, 3]}), (1, {0: [0, 1, 2, 3]}), (4, {i: [i] for i in range(4)})]:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(place_hosts, s.with_settings(projection_hosts=hosts), names=PLAIN[:2])
        assert host_claims(s) == owners
    await asyncio.sleep(1.0)
    sent, doubles = await flow.stop()
    assert sent > 100
    assert not doubles, f"a partition had two hosts: {doubles[:3]}"
    accounts_now, activity = fold_log(s)
    wait_caught_up(s, "account_balances")
    wait_caught_up(s, "account_activity")
    assert read_model(s, "account_balances") == sorted((a, *v) for a, v in accounts_now.items())
    assert read_model(s, "account_activity") == activity


@pytest.mark.parametrize("rows", [10, 600])
def test_a_batch_of_updates_lands_whether_pipelined_or_copied_into_one_update(rt, rows) -> None:
    import psycopg

    from eventray.platform.projections.definition import Table
    from eventray.platform.projections.writes import BULK_UPDATE_ROWS, BatchWrites

    assert 10 < BULK_UPDATE_ROWS <= 600  # the two cases take the two paths
    spec = Table("t", ("id", "owner", "balance", "status"), key=("id",))
    with psycopg.connect(rt.settings.dsn) as conn:
        conn.execute('CREATE SCHEMA s; CREATE TABLE s.t (id text PRIMARY KEY, owner text NOT NULL, '
                     'balance bigint NOT NULL CHECK (balance >= 0), status text NOT NULL)')
        first = BatchWrites([spec])
        for i in range(rows):
            first.create("t", {"id": f"a{i}", "owner": "o", "balance": i, "status": "open"})
        with conn.cursor() as cur:
            first.flush(cur, "s")
        conn.commit()
        second = BatchWrites([spec])
        for i in range(rows):
            second.update("t", f"a{i}", balance=i * 2 + 1)
            second.update("t", f"a{i}", balance=i * 2)  # folds into one
        for i in range(0, rows, 2):
            second.update("t", f"a{i}", status="frozen")  # another shape
        with conn.cursor() as cur:
            second.flush(cur, "s")
            assert cur.execute("SELECT to_regclass('eventray_upd_t_0')").fetchone()[0] is None  # dropped
        conn.commit()
        got = conn.execute("SELECT id, owner, balance, status FROM s.t").fetchall()
        assert sorted(got) == sorted((f"a{i}", "o", i * 2, "frozen" if i % 2 == 0 else "open") for i in range(rows))
        # a row the database refuses fails the whole batch, as the runner expects (it isolates it)
        bad = BatchWrites([spec])
        for i in range(rows):
            bad.update("t", f"a{i}", balance=-1 if i == rows - 1 else 5)
        with pytest.raises(psycopg.errors.CheckViolation), conn.cursor() as cur:
            bad.flush(cur, "s")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM s.t WHERE balance = 5").fetchone()[0] == 0
