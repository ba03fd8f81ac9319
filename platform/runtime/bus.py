"""The command bus: routes commands to their shard and micro-batches them per partition.

``await bus.send(command)`` returns an :class:`Outcome`. The bus maps the aggregate id to
its partition with Kafka's own partitioner (murmur2 of the key), so a shard's aggregates
and its log partition agree. Commands for one partition that arrive while a call to its
shard is in flight are gathered and sent as one Ray call: a single call costs about as much
as a hundred commands inside it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from eventray.platform.domain import Command
from eventray.platform.errors import Overloaded, ServiceUnavailable, UnknownCommand
from eventray.platform.runtime.outcome import Outcome

log = logging.getLogger("eventray.bus")


class ShardTransport:
    """How the bus reaches shards; the Ray implementation lives in shard_actor."""

    async def submit(self, partition: int, payload: bytes) -> bytes:  # pragma: no cover
        raise NotImplementedError

    async def read(self, partition: int, aggregate_id: str) -> tuple[bytes, int, str] | None:  # pragma: no cover
        """The shard's committed (state bytes, version, state type name) of an aggregate."""
        raise NotImplementedError


@dataclass
class _Lane:
    """Commands waiting for one partition."""

    waiting: list[tuple[Command, asyncio.Future[Outcome]]] = field(default_factory=list)
    in_flight: int = 0
    scheduled: bool = False


class CommandBus:
    """Sends commands to the shards that own them.

    Args:
        partitions: the event topic's partition count (fixed at topic creation).
        partition_for: ``(aggregate_id, partitions) -> partition``, Kafka's partitioner.
        transport: reaches the shard of a partition.
        encode_commands: ``list[Command] -> bytes``.
        decode_outcomes: ``bytes -> list[Outcome]``.
        known_commands: the command types the shards handle; any other is refused with
            :class:`UnknownCommand` before it is batched (it would fail its whole batch).
        max_in_flight: concurrent calls per partition; more commands wait and batch up. One
            is the default: everything that arrives during a call goes in the next one, so each
            Kafka transaction (the scarce resource, ~2,000/s on a 2-core machine) carries more
            commands (measured: 8.2-9.2k vs 6.0-6.7k commands/s at 256 clients, same p50 at 1).
        batch_max: the most commands in one call.
        waiting_max: the most commands waiting per partition before ``Overloaded``.
        call_timeout_s: how long one call to a shard may take before its commands get a
            retryable error.
    """

    def __init__(
        self,
        *,
        partitions: int,
        partition_for: Callable[[str, int], int],
        transport: ShardTransport,
        encode_commands: Callable[[list[Command]], bytes],
        decode_outcomes: Callable[[bytes], list[Outcome]],
        decode_state: Callable[[str, bytes], object] | None = None,
        known_commands: Collection[type] | None = None,
        max_in_flight: int = 1,
        batch_max: int = 1024,
        waiting_max: int = 50_000,
        call_timeout_s: float = 30.0,
    ) -> None:
        self.partitions = partitions
        self._partition_for = partition_for
        self._transport = transport
        self._encode = encode_commands
        self._decode = decode_outcomes
        self._decode_state = decode_state
        self._known = frozenset(known_commands) if known_commands is not None else None
        self._max_in_flight = max_in_flight
        self._batch_max = batch_max
        self._waiting_max = waiting_max
        self._call_timeout_s = call_timeout_s
        self._lanes = [_Lane() for _ in range(partitions)]

    def partition_of(self, aggregate_id: str) -> int:
        return self._partition_for(aggregate_id, self.partitions)

    async def send(self, command: Command) -> Outcome:
        """Send one command; wait for its outcome (after the events are committed)."""
        return await self._enqueue(command)

    async def send_many(self, commands: Sequence[Command]) -> list[Outcome]:
        """Send several commands at once; outcomes come back in the same order.

        Commands for the same aggregate keep their order.
        """
        return list(await asyncio.gather(*(self._enqueue(c) for c in commands)))

    async def read(self, aggregate_id: str) -> tuple[object, int] | None:
        """Consistent read: the aggregate's committed state and version, from its shard.

        Sees every command acknowledged before the call (read-your-writes), unlike the
        projections, which trail the log. ``None`` when the aggregate does not exist.
        """
        if self._decode_state is None:
            raise RuntimeError("this bus was built without a state decoder")
        found = await self._transport.read(self.partition_of(aggregate_id), aggregate_id)
        if found is None:
            return None
        payload, version, type_name = found
        return self._decode_state(type_name, payload), version

    def _enqueue(self, command: Command) -> asyncio.Future[Outcome]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        if self._known is not None and type(command) not in self._known:
            fut.set_result(Outcome.failure(command.command_id, getattr(command, "aggregate_id", ""), UnknownCommand(
                f"no aggregate of this app handles {type(command).__name__}; send one of its command types")))
            return fut
        partition = self._partition_for(command.aggregate_id, self.partitions)
        lane = self._lanes[partition]
        if len(lane.waiting) >= self._waiting_max:
            fut.set_result(Outcome.failure(command.command_id, command.aggregate_id, Overloaded(
                f"{len(lane.waiting)} commands already wait for partition {partition}; back off and retry")))
            return fut
        lane.waiting.append((command, fut))
        if not lane.scheduled and lane.in_flight < self._max_in_flight:
            # call_soon: commands enqueued in the same loop iteration share one call
            lane.scheduled = True
            loop.call_soon(self._flush, partition)
        return fut

    def _flush(self, partition: int) -> None:
        lane = self._lanes[partition]
        lane.scheduled = False
        while lane.waiting and lane.in_flight < self._max_in_flight:
            batch = lane.waiting[: self._batch_max]
            del lane.waiting[: self._batch_max]
            lane.in_flight += 1
            asyncio.ensure_future(self._call(partition, batch))

    async def _call(self, partition: int, batch: list[tuple[Command, asyncio.Future[Outcome]]]) -> None:
        lane = self._lanes[partition]
        commands = [c for c, _ in batch]
        try:
            # A deadline, so that one stuck call cannot hold its partition's lane forever. The
            # commands may still commit after it; a retry with the same command_id is deduped.
            reply = await asyncio.wait_for(self._transport.submit(partition, self._encode(commands)),
                                           self._call_timeout_s)
            outcomes = self._decode(reply)
        except Exception as exc:  # noqa: BLE001 - a dead shard becomes a retryable outcome
            log.warning("partition %d: shard call failed: %s", partition, exc)
            err = ServiceUnavailable(f"the shard for partition {partition} is unavailable "
                                     f"({type(exc).__name__}); retry with the same command_id")
            outcomes = [Outcome.failure(c.command_id, c.aggregate_id, err) for c in commands]
        finally:
            lane.in_flight -= 1
        for (_, fut), outcome in zip(batch, outcomes):
            if not fut.done():
                fut.set_result(outcome)
        if lane.waiting and not lane.scheduled:
            lane.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush, partition)
