"""The console's data layer on real Kafka, PostgreSQL and Ray, with the bank on a topic of its own.

Events come from the app's event index; the states and diffs are checked against a fold of the
committed log, independent of the console's code. Each test gets a database of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import msgspec
import psycopg
import pytest
import ray

from eventray.aggregates import ACCOUNT
from eventray.aggregates.account import Deposit, FreezeAccount, OpenAccount, Withdraw
from eventray.platform.composition import Runtime
from eventray.platform.eventlog import DecodedRecord, partition_for
from eventray.platform.migrations import migrate
from eventray.platform.projections.actor import start_runners, stop_topic_runners
from eventray.platform.projections.ensure import ensure_projections
from eventray.platform.runtime.actors import NAMESPACE
from eventray.platform.runtime.shards import shard_name, start_shards, stop_shards
from eventray.platform.sagas import composition as sagas_rt
from eventray.platform.sagas.settings import SagaSettings
from eventray.platform.settings import with_database
from eventray.sagas.transfer_money import TransferPolicy, TransferRequest
from eventray.serving.api.services import ApiServices
from eventray.serving.bank.fraud import AmountRuleScorer
from eventray.serving.console import data
from eventray.serving.settings import ServingSettings

pytestmark = pytest.mark.integration

INDEX = "bank_event_index"
SAGA = "TransferMoney"


@pytest.fixture()
def rt(stack_settings):
    db = f"it_console_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(stack_settings.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = with_database(stack_settings.dsn, db)
    s = stack_settings.model_copy(update={
        "database_url": dsn, "topic": f"it-console-{uuid.uuid4().hex[:8]}", "partitions": 2, "shards": 2,
    })
    migrate(dsn)
    rt = Runtime.load(s)
    rt.connect_ray()
    yield rt
    sagas_rt.stop_coordinators(rt, SAGA)
    stop_topic_runners(rt)
    stop_shards(rt)
    with psycopg.connect(stack_settings.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


async def send_ok(bus, commands) -> None:
    for _ in range(50):
        outs = await bus.send_many(commands)
        assert not [o for o in outs if not o.ok and not o.retryable], outs
        commands = [c for c, o in zip(commands, outs) if not o.ok]
        if not commands:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("commands kept failing retryably")


async def caught_up(services, names, timeout_s: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await data.projections(services)
        current = {r["name"]: r for r in rows if r["current"]}
        if all(n in current and current[n]["lag"] == 0 for n in names):
            return rows
        assert time.monotonic() < deadline, f"not caught up: {rows}"
        await asyncio.sleep(0.2)


def folded_states(rt, aggregate_id: str) -> dict[int, dict]:
    """version -> the state after it (builtins), folded from the committed log, not the index."""
    out, state = {}, None
    for r in rt.read_decoded(partition_for(aggregate_id, rt.settings.partitions), 0):
        if isinstance(r, DecodedRecord) and r.envelope.aggregate_id == aggregate_id:
            state = ACCOUNT.evolve(state, r.event)
            out[r.envelope.version] = msgspec.to_builtins(state)
    return out


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_events_chain_projections_and_replay(rt, monkeypatch) -> None:
    start_shards(rt)
    bus = rt.command_bus()
    t0 = int(time.time() * 1000)
    acc = "acc-1"
    cmds = [OpenAccount(aggregate_id=acc, owner_id="o-1", currency="EUR", command_id="c-open",
                        correlation_id="req-open", subject="alice")]
    cmds += [Deposit(aggregate_id=acc, amount=100 * (i + 1), command_id=f"c-dep-{i}", correlation_id=f"req-dep-{i}",
                     subject="alice") for i in range(6)]
    for c in cmds:  # one at a time: versions in this order
        await send_ok(bus, [c])
    await send_ok(bus, [Withdraw(aggregate_id=acc, amount=50, command_id="c-wd", correlation_id="req-wd")])
    await send_ok(bus, [FreezeAccount(aggregate_id=acc, reason="audit", command_id="c-frz", correlation_id="req-frz")])
    await send_ok(bus, [OpenAccount(aggregate_id=f"other-{i}", owner_id="o-2", currency="EUR") for i in range(4)])
    await asyncio.to_thread(ensure_projections, rt, names=[INDEX, "account_balances"])
    services = await ApiServices.start(rt, ServingSettings(), sagas=SagaSettings(partitions=2, coordinators=1))
    try:
        await caught_up(services, [INDEX, "account_balances"])
        assert data.aggregate_types(rt) == ["User", "Account"]

        # --- the timeline, newest first, paged, with states and diffs from a fold of the log
        truth = folded_states(rt, acc)
        assert sorted(truth) == list(range(1, 10))
        pages, before = [], None
        while True:
            page = await data.events_of(services, "Account", acc, before_version=before, limit=4)
            pages.append([e["version"] for e in page["items"]])
            for e in page["items"]:
                assert e["state_after"] == truth[e["version"]], e["version"]
            before = page["next_before_version"]
            if before is None:
                break
        assert pages == [[9, 8, 7, 6], [5, 4, 3, 2], [1]]
        newest = (await data.events_of(services, "Account", acc, limit=3))["items"]
        freeze, withdraw, last_deposit = newest
        assert freeze["event_type"] == "AccountFrozen" and freeze["command_id"] == "c-frz"
        assert freeze["diff"] == [{"field": "status", "before": "active", "after": "frozen"}]
        assert withdraw["diff"] == [{"field": "balance", "before": 2_100, "after": 2_050}]
        assert withdraw["payload"] == {"type": "MoneyWithdrawn", "amount": 50, "balance_after": 2_050}
        assert (last_deposit["command_id"], last_deposit["correlation_id"], last_deposit["subject"]) == \
            ("c-dep-5", "req-dep-5", "alice")
        assert last_deposit["partition"] == partition_for(acc, 2) and freeze["offset"] > withdraw["offset"]
        assert t0 <= withdraw["timestamp"] <= int(time.time() * 1000)
        first = (await data.events_of(services, "Account", acc, before_version=2, limit=5))["items"]
        assert [e["version"] for e in first] == [1] and first[0]["event_type"] == "AccountOpened"
        assert {d["field"]: d["after"] for d in first[0]["diff"]} == {
            "owner_id": "o-1", "currency": "EUR", "balance": 0, "status": "active", "transfers": {}}
        assert all(d["before"] is None for d in first[0]["diff"])
        assert (await data.events_of(services, "Account", "nobody"))["items"] == []

        # --- bounded: bad input and long histories are typed errors
        for bad in (0, 501, "5"):
            with pytest.raises(data.ConsoleInputInvalid, match="limit"):
                await data.events_of(services, "Account", acc, limit=bad)
        with pytest.raises(data.ConsoleInputInvalid, match="no aggregate type 'Nope'; known: User, Account"):
            await data.events_of(services, "Nope", acc)
        with pytest.raises(data.ConsoleInputInvalid):
            await data.correlation_chain(services, "req-wd", limit=1_001)
        monkeypatch.setattr(data, "MAX_FOLD", 5)
        with pytest.raises(data.HistoryTooLong, match="more than 5 events.*before_version=6"):
            await data.events_of(services, "Account", acc)
        assert [e["version"] for e in (await data.events_of(services, "Account", acc, before_version=6,
                                                             limit=2))["items"]] == [5, 4]
        monkeypatch.undo()

        # --- a correlation id's chain, and which projections have applied it
        chain = await data.correlation_chain(services, "req-dep-3")
        assert chain["commands"] == ["c-dep-3"]
        assert [(e["aggregate_id"], e["version"], e["event_type"]) for e in chain["events"]] == \
            [(acc, 5, "MoneyDeposited")]
        by_name = {p["name"]: p for p in chain["projections"]}
        assert set(by_name) == {INDEX, "account_balances"}
        assert all(p["applied"] and p["handles"] for p in by_name.values())

        balances_v = by_name["account_balances"]["version"]
        # account_balances stops (its host goes; the index alone runs on a runner of its own): a new
        # request reaches the index but not it
        await asyncio.to_thread(stop_topic_runners, rt)
        await asyncio.to_thread(start_runners, rt, INDEX, by_name[INDEX]["version"])
        await send_ok(bus, [Deposit(aggregate_id=acc, amount=1, command_id="c-late", correlation_id="req-late")])
        deadline = time.monotonic() + 30
        while not (late := await data.correlation_chain(services, "req-late"))["events"]:
            assert time.monotonic() < deadline, "the index did not get the late deposit"
            await asyncio.sleep(0.2)
        states = {p["name"]: (p["applied"], p["pending"]) for p in late["projections"]}
        assert states == {INDEX: (True, 0), "account_balances": (False, 1)}
        assert late["sagas"] == [] and late["commands"] == ["c-late"]

        # --- lag, its history, and the stalled badge
        state = data.console_state(services)
        state.sample_every_s, state.stall_after_s = 0.0, 3600.0
        await caught_up(services, [INDEX])
        rows = {r["name"]: r for r in await data.projections(services) if r["current"]}
        assert not rows["account_balances"]["stalled"]  # lagging, but no sample an hour old yet
        state.stall_after_s = 1.0
        await asyncio.sleep(1.3)
        rows = {r["name"]: r for r in await data.projections(services) if r["current"]}
        bal, idx = rows["account_balances"], rows[INDEX]
        assert bal["lag"] == sum(h - bal["offsets"].get(p, 0) for p, h in bal["head_offsets"].items()) >= 1
        assert bal["stalled"] and not idx["stalled"] and idx["lag"] == 0
        assert bal["head_offsets"] == idx["head_offsets"] and bal["version"] == balances_v
        assert bal["status"] == "live" and not bal["outdated"] and bal["dead_letters"] == 0
        assert len(bal["lag_history"]) >= 3 and all(s["lag"] >= 1 for s in bal["lag_history"][-2:])
        assert [s["at_ms"] for s in bal["lag_history"]] == sorted(s["at_ms"] for s in bal["lag_history"])
        assert await data.dead_letters(services, "account_balances", balances_v) == {"items": [], "total": 0}
        with pytest.raises(data.ConsoleInputInvalid):
            await data.dead_letters(services, "nope", 1)

        # --- replay from the console: audited, one at a time, followed to "live"
        lines = _Lines()
        audit = logging.getLogger("eventray.console.audit")
        audit.addHandler(lines)
        level = audit.level
        audit.setLevel(logging.INFO)
        try:
            rid = await data.start_replay(services, "account_balances", subject="admin-7")
            with pytest.raises(data.ReplayRunning):
                await data.start_replay(services, "account_balances", subject="admin-8")
            deadline = time.monotonic() + 180
            while (progress := data.replay_progress(rid))["phase"] not in ("live", "failed"):
                assert time.monotonic() < deadline, progress
                await asyncio.sleep(0.3)
            assert progress["phase"] == "live" and progress["error"] is None, progress
            assert progress["version"] == balances_v + 1 and progress["lag"] == 0 and progress["total"] > 0
        finally:
            audit.removeHandler(lines)
            audit.setLevel(level)
        assert any("admin-7" in line and "account_balances" in line and "requested" in line for line in lines.lines)
        assert not any("admin-8" in line for line in lines.lines)
        with pytest.raises(data.UnknownReplay):
            data.replay_progress("nope")
        rows = await caught_up(services, ["account_balances"])
        assert [r["version"] for r in rows if r["name"] == "account_balances" and r["current"]] == [balances_v + 1]
        again = await data.correlation_chain(services, "req-late")
        assert {p["name"]: p["applied"] for p in again["projections"]} == {INDEX: True, "account_balances": True}
    finally:
        await data.close(services)
        await services.close()


async def test_sagas_and_saga_detail(rt) -> None:
    ss = SagaSettings(partitions=2, coordinators=1, poll_ms=5)
    policy = TransferPolicy(scorer="rule", fraud_threshold=0.9, rule_limit=10**9, step_timeout_ms=3_000,
                            overall_timeout_ms=120_000, max_attempts=1_000, compensation_max_attempts=40,
                            backoff_base_ms=50, backoff_max_ms=500)
    start_shards(rt)
    sagas_rt.start_coordinators(rt, ss, SAGA, policy=policy, services={"fraud": AmountRuleScorer(limit=5_000).score})
    bus = rt.command_bus()
    # "a*" on partition 0, "b*" on partition 1
    a = [f"a{i}" for i in range(200) if partition_for(f"a{i}", 2) == 0][:3]
    b = [f"b{i}" for i in range(200) if partition_for(f"b{i}", 2) == 1][:1]
    await send_ok(bus, [OpenAccount(aggregate_id=x, owner_id="o", currency="EUR") for x in (*a, *b)])
    await send_ok(bus, [Deposit(aggregate_id=x, amount=1_000) for x in (a[0], b[0])])
    await send_ok(bus, [FreezeAccount(aggregate_id=a[2], reason="test")])
    await asyncio.to_thread(ensure_projections, rt, names=[INDEX])
    services = await ApiServices.start(rt, ServingSettings(), sagas=ss)
    try:
        client = services.saga(SAGA)
        ok = await client.run(TransferRequest(transfer_id="tx-ok", from_account=a[0], to_account=a[1], amount=300,
                                              currency="EUR"), 60)
        comp = await client.run(TransferRequest(transfer_id="tx-comp", from_account=a[0], to_account=a[2],
                                                amount=200, currency="EUR"), 60)
        assert (ok.status, comp.status) == ("completed", "compensated")
        # the shard of partition 1 goes away: a transfer from b0 stays live, retrying its debit
        ray.kill(ray.get_actor(shard_name(rt.topic, 1), namespace=NAMESPACE), no_restart=True)
        await client.request(TransferRequest(transfer_id="tx-live", from_account=b[0], to_account=a[1], amount=10,
                                             currency="EUR"))
        await caught_up(services, [INDEX])

        listed = await data.sagas(services)
        assert set(listed["unavailable"]) <= {"KYC"}  # the bank's other saga: its coordinators do not run here
        assert [(i["saga_id"], i["status"], i["terminal"]) for i in listed["items"]] == [
            ("tx-live", "debiting", False), ("tx-comp", "compensated", True), ("tx-ok", "completed", True)]
        assert all(i["saga"] == SAGA and not i["needs_attention"] for i in listed["items"])
        assert [i["saga_id"] for i in (await data.sagas(services, status="completed"))["items"]] == ["tx-ok"]
        assert len((await data.sagas(services, limit=1))["items"]) == 1
        with pytest.raises(data.ConsoleInputInvalid):
            await data.sagas(services, limit=0)

        detail = await data.saga_detail(services, SAGA, "tx-ok")
        assert detail["status"] == "completed" and detail["state"]["amount"] == 300
        history = detail["history"]
        assert [h["seq"] for h in history] == list(range(1, len(history) + 1))
        assert history[0]["why"] == "requested" and history[-1]["status"] == "completed"
        assert {"debiting", "scoring", "crediting", "completed"} <= {h["status"] for h in history}
        assert any(h["trigger"] for h in history)  # log events moved it
        assert detail["deadlines"] == []
        sent = {c["command_id"]: [(e["aggregate_id"], e["event_type"]) for e in c["events"]]
                for c in detail["commands"]}
        assert sent == {"tx-ok:debit:1": [(a[0], "TransferDebited")], "tx-ok:credit:1": [(a[1], "TransferCredited")]}
        comp_sent = {c["command_id"] for c in (await data.saga_detail(services, SAGA, "tx-comp"))["commands"]}
        assert any(":refund:" in c for c in comp_sent) and all(c.startswith("tx-comp:") for c in comp_sent)

        live = await data.saga_detail(services, SAGA, "tx-live")
        assert live["status"] == "debiting" and live["commands"] == []
        assert {d["name"] for d in live["deadlines"]} == {"overall", "step"}
        assert all(d["at_ms"] > 0 for d in live["deadlines"])
        with pytest.raises(data.SagaNotFound):
            await data.saga_detail(services, SAGA, "tx-none")
        with pytest.raises(data.ConsoleInputInvalid):
            await data.saga_detail(services, "Nope", "tx-ok")

        chain = await data.correlation_chain(services, "tx-ok")  # no request id: the transfer id correlates
        assert chain["commands"] == ["tx-ok:debit:1", "tx-ok:credit:1"]
        assert chain["sagas"] == [{"saga": SAGA, "saga_id": "tx-ok", "status": "completed"}]

        status = await data.cluster(services)
        names = [x["name"] for x in status["actors"]]
        assert any(n.startswith("saga") or "saga" in n for n in names) and status["nodes"]
    finally:
        await data.close(services)
        await services.close()
