"""Shard logic over in-memory stand-ins: batching, idempotency, rollback, recovery, backpressure."""

from __future__ import annotations

import asyncio

import pytest

from eventray.aggregates import AGGREGATES
from eventray.aggregates.account import Deposit, OpenAccount, Withdraw
from eventray.platform.composition import Runtime

from eventray.platform.eventlog.admin import partition_for
from eventray.platform.runtime.bus import CommandBus, ShardTransport
from eventray.platform.runtime.shard import ShardConfig, ShardService

from memlog import MemoryLog, MemorySnapshots

BANK = Runtime.load()

TOPIC = "t"


def make_service(log: MemoryLog, snaps: MemorySnapshots, partitions=(0,), **config) -> ShardService:
    codec = BANK.codec
    return ShardService(
        partitions=list(partitions),
        aggregates=AGGREGATES,
        make_writer=log.writer,
        read_partition=lambda p, start: log.read(codec, p, start),
        snapshots=snaps,
        encode=codec.encode,
        topic=TOPIC,
        config=ShardConfig(**config),
    )


def open_(acc: str, **kw) -> OpenAccount:
    return OpenAccount(aggregate_id=acc, owner_id="u1", currency="EUR", **kw)


async def test_batch_is_decided_in_order_and_committed_once() -> None:
    log, snaps = MemoryLog(), MemorySnapshots()
    svc = make_service(log, snaps)
    outs = await svc.submit(0, [open_("a"), Deposit(aggregate_id="a", amount=10),
                                Withdraw(aggregate_id="a", amount=4)])
    assert [o.version for o in outs] == [1, 2, 3]
    assert all(o.ok for o in outs)
    assert len(log.partitions[0]) == 3
    assert svc.read(0, "a")[0].balance == 6


async def test_domain_error_is_typed_and_writes_nothing() -> None:
    log, snaps = MemoryLog(), MemorySnapshots()
    svc = make_service(log, snaps)
    await svc.submit(0, [open_("a")])
    [out] = await svc.submit(0, [Withdraw(aggregate_id="a", amount=1)])
    assert out.error_type == "InsufficientFunds" and not out.retryable
    assert len(log.partitions[0]) == 1


async def test_repeated_command_id_returns_first_outcome() -> None:
    log, snaps = MemoryLog(), MemorySnapshots()
    svc = make_service(log, snaps)
    await svc.submit(0, [open_("a")])
    dep = Deposit(aggregate_id="a", amount=5)
    [first] = await svc.submit(0, [dep])
    [again, again2] = await svc.submit(0, [dep, dep])
    assert again.duplicate and again2.duplicate
    assert (again.version, again.events) == (first.version, first.events)
    assert svc.read(0, "a")[0].balance == 5
    assert len(log.partitions[0]) == 2


async def test_expected_version_conflict() -> None:
    log, snaps = MemoryLog(), MemorySnapshots()
    svc = make_service(log, snaps)
    await svc.submit(0, [open_("a")])
    [out] = await svc.submit(0, [Deposit(aggregate_id="a", amount=5, expected_version=0)])
    assert out.error_code == "CONFLICT"
    [ok] = await svc.submit(0, [Deposit(aggregate_id="a", amount=5, expected_version=1)])
    assert ok.ok and ok.version == 2


async def test_failed_commit_restores_states_and_fails_retryably() -> None:
    log, snaps = MemoryLog(), MemorySnapshots()
    svc = make_service(log, snaps)
    await svc.submit(0, [open_("a")])
    log.failures.append("abort")
    dep = Deposit(aggregate_id="a", amount=5)
    [out] = await svc.submit(0, [dep, ][:1])
    assert out.retryable and out.error_code == "COMMIT_FAILED"
    assert svc.read(0, "a")[1] == 1
    [retry] = await svc.submit(0, [dep])
    assert retry.ok and not retry.duplicate and retry.version == 2


async def test_commit_with_lost_ack_is_learned_from_the_log_before_a_retry() -> None:
    """The commit happened but its reply was lost: the retry must not apply twice."""
    log, snaps = MemoryLog(), MemorySnapshots()
    svc = make_service(log, snaps)
    await svc.submit(0, [open_("a")])
    log.failures.append("lost-ack")
    dep = Deposit(aggregate_id="a", amount=5)
    [out] = await svc.submit(0, [dep])
    assert out.retryable
    [retry] = await svc.submit(0, [dep])
    assert retry.duplicate and retry.version == 2
    assert svc.read(0, "a")[0].balance == 5
    assert len(log.partitions[0]) == 2


async def test_fenced_shard_stops_serving() -> None:
    log, snaps = MemoryLog(), MemorySnapshots()
    old = make_service(log, snaps)
    await old.submit(0, [open_("a")])
    new = make_service(log, snaps)
    await new.start()
    [out] = await old.submit(0, [Deposit(aggregate_id="a", amount=1)])
    assert out.error_code == "UNAVAILABLE"
    assert old.fenced is not None
    [later] = await old.submit(0, [Deposit(aggregate_id="a", amount=1)])
    assert later.error_code == "UNAVAILABLE"
    [ok] = await new.submit(0, [Deposit(aggregate_id="a", amount=1)])
    assert ok.ok and ok.version == 2
    assert len(log.partitions[0]) == 2


async def test_recovery_from_snapshots_equals_recovery_from_log_and_keeps_dedupe() -> None:
    log, snaps = MemoryLog(), MemorySnapshots()
    svc = make_service(log, snaps)
    cmds = [open_(f"acc{i}") for i in range(20)]
    await svc.submit(0, cmds)
    deposits = [Deposit(aggregate_id=f"acc{i % 20}", amount=i + 1) for i in range(100)]
    await svc.submit(0, deposits[:50])
    await svc.flush_snapshots()
    await svc.submit(0, deposits[50:])
    from_snap = make_service(log, snaps)
    await from_snap.start()
    from_log = make_service(log, MemorySnapshots())
    await from_log.start()
    for i in range(20):
        assert from_snap.read(0, f"acc{i}") == from_log.read(0, f"acc{i}") == svc.read(0, f"acc{i}")
    # a command acknowledged before the snapshot is still recognised after recovery
    [dup] = await from_snap.submit(0, [deposits[3]])
    assert dup.duplicate


async def test_a_repeat_after_recovery_reports_the_first_applications_events() -> None:
    log, snaps = MemoryLog(), MemorySnapshots()
    svc = make_service(log, snaps)
    dep = Deposit(aggregate_id="a", amount=5)
    await svc.submit(0, [open_("a")])
    [first] = await svc.submit(0, [dep])
    recovered = make_service(log, snaps)  # a new incarnation: its dedupe index comes from the log
    await recovered.start()
    [again] = await recovered.submit(0, [dep])
    assert again.duplicate
    assert (again.version, [type(e) for e in again.events]) == (first.version, [type(e) for e in first.events])
    assert again.events == first.events
    assert recovered.read(0, "a")[0].balance == 5


async def test_overload_is_retryable_and_bounded() -> None:
    log, snaps = MemoryLog(), MemorySnapshots()
    svc = make_service(log, snaps, queue_max=10)
    await svc.submit(0, [open_("a")])
    results = await asyncio.gather(*(svc.submit(0, [Deposit(aggregate_id="a", amount=1) for _ in range(6)])
                                     for _ in range(5)))
    codes = [o.error_code for batch in results for o in batch]
    assert "OVERLOADED" in codes
    assert all(c in (None, "OVERLOADED") for c in codes)
    assert svc.partitions[0].queued_commands == 0


class DirectTransport(ShardTransport):
    def __init__(self, services):
        self.services = services
        self.calls = 0

    async def read(self, partition, aggregate_id):
        found = self.services[partition].read(partition, aggregate_id)
        if found is None:
            return None
        return BANK.wire.encode_state(found[0]), found[1], type(found[0]).__name__

    async def submit(self, partition, payload):
        self.calls += 1
        wire = BANK.wire
        outs = await self.services[partition].submit(partition, wire.decode_commands(payload))
        return wire.encode_outcomes(outs)


async def test_bus_routes_by_kafka_partitioner_and_batches() -> None:
    log, snaps = MemoryLog(), MemorySnapshots()
    svc = make_service(log, snaps, partitions=(0, 1, 2, 3))
    transport = DirectTransport({p: svc for p in range(4)})
    wire = BANK.wire
    bus = CommandBus(partitions=4, partition_for=partition_for, transport=transport,
                     encode_commands=wire.encode_commands, decode_outcomes=wire.decode_outcomes,
                     decode_state=wire.decode_state)
    outs = await bus.send_many([open_(f"acc{i}") for i in range(400)])
    assert all(o.ok for o in outs)
    assert transport.calls <= 8, "concurrent commands should share calls"
    for i in range(400):
        p = partition_for(f"acc{i}", 4)
        assert svc.read(p, f"acc{i}") is not None
    out = await bus.send(Deposit(aggregate_id="acc7", amount=3))
    assert out.ok and out.version == 2 and type(out.events[0]).__name__ == "MoneyDeposited"
    state, version = await bus.read("acc7")
    assert (state.balance, version) == (3, 2)
    assert await bus.read("never-opened") is None


def test_outcome_error_is_typed() -> None:
    from eventray.platform.errors import ConcurrencyConflict
    from eventray.platform.runtime.outcome import Outcome

    out = Outcome.failure("c", "a", ConcurrencyConflict("stale"))
    with pytest.raises(ConcurrencyConflict):
        out.raise_for_error()


class StuckTransport(ShardTransport):
    async def submit(self, partition, payload):
        await asyncio.sleep(3600)


async def test_a_stuck_shard_call_times_out_retryably() -> None:
    wire = BANK.wire
    bus = CommandBus(partitions=1, partition_for=partition_for, transport=StuckTransport(),
                     encode_commands=wire.encode_commands, decode_outcomes=wire.decode_outcomes,
                     call_timeout_s=0.05)
    out = await asyncio.wait_for(bus.send(Deposit(aggregate_id="a", amount=1)), 5)
    assert out.error_code == "UNAVAILABLE" and out.retryable
    # the lane is free again: the next call is attempted (and times out) rather than queued forever
    again = await asyncio.wait_for(bus.send(Deposit(aggregate_id="a", amount=1)), 5)
    assert again.retryable
