"""The write path on real Kafka, PostgreSQL and Ray: kills, retries, fencing, snapshots, overload."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter, defaultdict

import pytest
import ray

from eventray.aggregates import ACCOUNT
from eventray.aggregates.account import Deposit, OpenAccount, Withdraw
from eventray.platform.composition import Runtime
from eventray.platform.eventlog.writer import KAFKA_CLIENTS
from eventray.platform.runtime.actors import NAMESPACE
from eventray.platform.runtime.outcome import Outcome
from eventray.platform.runtime.shard_actor import AggregateShard
from eventray.platform.runtime.shards import (
    RayShardTransport, shard_assignment, shard_name, start_shards, stop_shards,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=KAFKA_CLIENTS)
def rt(stack_settings, request):
    """A runtime whose shards write with each Kafka client in turn."""
    rt = Runtime.load(stack_settings.model_copy(update={
        "topic": f"it-write-{uuid.uuid4().hex[:8]}", "partitions": 4, "shards": 2,
        "snapshot_interval_s": 0.5, "kafka_client": request.param,
    }))
    rt.connect_ray()
    yield rt
    stop_shards(rt)


def read_log(rt) -> list:
    records = []
    for p in range(rt.settings.partitions):
        records.extend(rt.read_decoded(p, 0))
    return records


async def send_until_done(bus, command, *, attempts: int = 200) -> Outcome:
    """A client that retries retryable outcomes with the same command_id."""
    for attempt in range(attempts):
        out = await bus.send(command)
        if not out.retryable:
            return out
        await asyncio.sleep(min(0.05 * (attempt + 1), 0.5))
    raise AssertionError(f"{command.command_id} still retryable after {attempts} attempts: {out}")


def assert_log_matches(rt, acked: dict[str, Outcome]) -> dict[str, object]:
    """Every acknowledged command's events are in the log exactly once; versions are gapless."""
    records = read_log(rt)
    per_command = Counter(r.envelope.command_id for r in records)
    for cid, out in acked.items():
        if out.ok and not out.duplicate:
            assert per_command[cid] == len(out.events), f"command {cid}: {per_command[cid]} events in the log"
    versions = defaultdict(list)
    folded: dict[str, object] = {}
    for r in records:
        versions[r.envelope.aggregate_id].append(r.envelope.version)
        folded[r.envelope.aggregate_id] = ACCOUNT.evolve(folded.get(r.envelope.aggregate_id), r.event)
    for agg, vs in versions.items():
        assert vs == list(range(1, len(vs) + 1)), f"{agg}: versions {vs[:20]}"
    return folded


async def test_killed_shard_loses_nothing_and_retries_apply_once(rt) -> None:
    handles = start_shards(rt)
    bus = rt.command_bus()
    accounts = [f"acc-{i}" for i in range(200)]
    opened = await asyncio.gather(*(send_until_done(bus, OpenAccount(aggregate_id=a, owner_id="u", currency="EUR"))
                                     for a in accounts))
    assert all(o.ok for o in opened)
    rng = random.Random(7)
    commands = [Deposit(aggregate_id=rng.choice(accounts), amount=rng.randint(1, 100)) for _ in range(3000)]

    async def killer():
        await asyncio.sleep(0.3)
        ray.kill(handles[0], no_restart=False)
        await asyncio.sleep(0.5)
        ray.kill(handles[1], no_restart=False)

    results = await asyncio.gather(*(send_until_done(bus, c) for c in commands), killer())
    outcomes = results[:-1]
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok][:3]
    acked = {c.command_id: o for c, o in zip(commands, outcomes)}
    acked.update({o.command_id: o for o in opened})

    # every command again, same ids: nothing applies twice
    again = await asyncio.gather(*(send_until_done(bus, c) for c in commands))
    assert all(o.duplicate for o in again)
    folded = assert_log_matches(rt, acked)

    expected = Counter()
    for c in commands:
        expected[c.aggregate_id] += c.amount
    for agg in accounts:
        state = folded[agg]
        assert state.balance == expected[agg]
        found = await bus.read(agg)
        assert found is not None
        assert found == (state, 1 + sum(1 for c in commands if c.aggregate_id == agg))


async def test_second_incarnation_fences_the_first(rt) -> None:
    [first, _] = start_shards(rt)
    bus = rt.command_bus()
    wire = rt.wire
    parts = shard_assignment(rt)[0]
    acc = next(f"f-{i}" for i in range(1000) if bus.partition_of(f"f-{i}") == parts[0])
    assert (await bus.send(OpenAccount(aggregate_id=acc, owner_id="u", currency="EUR"))).ok
    second = AggregateShard.options(name=f"fencer-{rt.topic}", namespace=NAMESPACE).remote(rt.settings, parts)
    ray.get(second.ready.remote())
    payload = wire.encode_commands([Deposit(aggregate_id=acc, amount=1)])
    [from_first] = wire.decode_outcomes(ray.get(first.submit.remote(parts[0], payload)))
    assert from_first.error_code == "UNAVAILABLE" and "fenced" in from_first.error_message
    assert ray.get(first.describe.remote())["fenced"]
    [from_second] = wire.decode_outcomes(ray.get(second.submit.remote(parts[0], payload)))
    assert from_second.ok and from_second.version == 2
    ray.kill(second, no_restart=True)
    assert_log_matches(rt, {})


async def test_snapshot_recovery_equals_full_replay(rt) -> None:
    start_shards(rt)
    bus = rt.command_bus()
    accounts = [f"s-{i}" for i in range(300)]
    await bus.send_many([OpenAccount(aggregate_id=a, owner_id="u", currency="EUR") for a in accounts])
    await bus.send_many([Deposit(aggregate_id=a, amount=7) for a in accounts])
    for h in [ray.get_actor(shard_name(rt.topic, i), namespace=NAMESPACE) for i in range(2)]:
        ray.get(h.flush_snapshots.remote())
    await bus.send_many([Withdraw(aggregate_id=a, amount=2) for a in accounts[:100]])
    stop_shards(rt)  # flushes a final snapshot too; both recoveries below read the same log

    from eventray.platform.snapshots.store import SnapshotStore

    for p in range(rt.settings.partitions):
        with_snaps = rt.build_shard_service([p])
        await with_snaps.start()
        full = rt.build_shard_service([p])
        full._snapshots = _NoSnapshots()
        await full.start()
        ids = [a for a in accounts if bus.partition_of(a) == p]
        assert ids
        for a in ids:
            assert with_snaps.read(p, a) == full.read(p, a)
        assert with_snaps.describe()["partitions"][p]["aggregates"] == len(ids)
        await with_snaps.stop()
        await full.stop()
    assert isinstance(with_snaps._snapshots, SnapshotStore)  # the runtime built the PostgreSQL store


class _NoSnapshots:
    def load_checkpoint(self, topic, partition):
        return None

    def load_partition(self, topic, partition):
        return []

    def save(self, *args):
        pass


async def test_expected_version_conflict_is_typed(rt) -> None:
    start_shards(rt)
    bus = rt.command_bus()
    assert (await bus.send(OpenAccount(aggregate_id="c1", owner_id="u", currency="EUR"))).ok
    out = await bus.send(Deposit(aggregate_id="c1", amount=5, expected_version=7))
    assert out.error_code == "CONFLICT" and not out.retryable
    assert "version 1" in out.error_message
    from eventray.platform.errors import ConcurrencyConflict

    with pytest.raises(ConcurrencyConflict):
        out.raise_for_error()


async def test_flooding_a_shard_gives_retryable_overload_not_unbounded_memory(rt) -> None:
    flood = rt.with_settings(shard_queue_max=200, shard_batch_max=100, bus_waiting_max=1_000)
    handles = start_shards(flood)
    bus = flood.command_bus()
    wire = flood.wire
    assert (await bus.send(OpenAccount(aggregate_id="hot", owner_id="u", currency="EUR"))).ok
    p = bus.partition_of("hot")
    handle = handles[next(i for i, parts in enumerate(shard_assignment(flood)) if p in parts)]

    # many routers at once (as many Serve replicas would be): the shard's own queue is the bound
    payloads = [wire.encode_commands([Deposit(aggregate_id="hot", amount=1) for _ in range(100)])
                for _ in range(60)]
    replies = await asyncio.gather(*(handle.submit.remote(p, payload) for payload in payloads))
    direct = Counter(o.error_code for r in replies for o in wire.decode_outcomes(r))
    assert direct["OVERLOADED"] > 0 and direct[None] > 0, direct
    assert set(direct) <= {None, "OVERLOADED"}, direct

    # one router flooded: its own waiting list is bounded too
    outs = await bus.send_many([Deposit(aggregate_id="hot", amount=1) for _ in range(20_000)])
    via_bus = Counter(o.error_code for o in outs)
    assert via_bus["OVERLOADED"] > 0 and via_bus[None] > 0, via_bus
    assert all(o.retryable for o in outs if o.error_code == "OVERLOADED")

    state = await RayShardTransport(flood).read(p, "hot")
    assert state[1] == 1 + direct[None] + via_bus[None]  # exactly the acknowledged deposits applied
    assert ray.get(handle.describe.remote())["partitions"][p]["queued"] == 0
