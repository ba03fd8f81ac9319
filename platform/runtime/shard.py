"""The aggregate shard: the single writer of one or more log partitions.

``ShardService`` is the runner around :class:`PartitionCore`: it owns the transactional
writers, the snapshot store and the recovery procedure; the Ray actor in
:mod:`eventray.platform.runtime.shard_actor` is a thin shell around it.

Per partition, one loop takes everything queued (up to ``batch_max`` commands), decides it,
commits the batch's events in ONE Kafka transaction and only then replies. A failed commit
rolls the in-memory states back and re-reads the partition's tail after re-creating the
producer, so that a commit whose result was unknown (a time-out) is learned from the log
before any retry is decided: a retried command can never apply twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from eventray.platform.domain import AggregateType, Command
from eventray.platform.errors import (
    CommitFailed,
    EventrayError,
    Fenced,
    Overloaded,
    Retryable,
    ServiceUnavailable,
    ShardRecovering,
)
from eventray.platform.runtime.outcome import Outcome
from eventray.platform.runtime.partition import PartitionCore

log = logging.getLogger("eventray.shard")


class LogWriter(Protocol):
    def init(self) -> None: ...
    def append_batch(self, records: Sequence[tuple[bytes, bytes]]) -> list[int]: ...
    def recreate(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class ShardConfig:
    """Tuning of one shard; defaults suit a laptop."""

    batch_max: int = 2048
    queue_max: int = 20_000
    snapshot_every_events: int = 5_000
    snapshot_interval_s: float = 2.0
    dedupe_window: int = 100_000
    recovery_wait_s: float = 30.0


@dataclass
class _Queued:
    commands: list[Command]
    future: asyncio.Future[list[Outcome]]
    at: float = field(default_factory=time.perf_counter)


@dataclass
class _Partition:
    number: int
    core: PartitionCore
    writer: LogWriter | None = None
    queue: list[_Queued] = field(default_factory=list)
    queued_commands: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    events_since_snapshot: int = 0
    last_snapshot: float = field(default_factory=time.monotonic)
    snapshotting: asyncio.Task[None] | None = None
    loop_task: asyncio.Task[None] | None = None
    recovery_s: float = 0.0


class ShardService:
    """Hosts the aggregates of ``partitions`` and writes their events.

    Args:
        partitions: the partition numbers this shard owns.
        aggregates: the aggregate types it hosts.
        make_writer: builds the transactional writer of one partition.
        read_partition: ``(partition, from_offset) -> iterable of decoded records``, up to
            the last stable offset, read_committed.
        snapshots: the snapshot store (``save``, ``load_partition``, ``load_checkpoint``).
        encode: builds a record value from an event and its envelope fields.
        topic: the event topic, for snapshot keys.
        config: tuning.
        observer: receives what happened (metrics); see ``eventray.platform.observability``.
    """

    def __init__(
        self,
        *,
        partitions: Sequence[int],
        aggregates: Sequence[AggregateType[Any]],
        make_writer: Callable[[int], LogWriter],
        read_partition: Callable[[int, int], Any],
        snapshots: Any,
        encode: Callable[..., bytes],
        topic: str,
        config: ShardConfig | None = None,
        observer: Any = None,
    ) -> None:
        self.config = config or ShardConfig()
        self.observer = observer
        self.topic = topic
        self._aggregates = {a.name: a for a in aggregates}
        self._state_decoders = {a.name: msgspec.msgpack.Decoder(a.state_type) for a in aggregates}
        self._state_encoder = msgspec.msgpack.Encoder()
        self._make_writer = make_writer
        self._read_partition = read_partition
        self._snapshots = snapshots
        self.partitions = {
            p: _Partition(
                number=p,
                core=PartitionCore(aggregates=aggregates, encode=encode,
                                   dedupe_window=self.config.dedupe_window),
            )
            for p in partitions
        }
        self._ready: asyncio.Future[None] | None = None
        self.fenced: Fenced | None = None
        self.stats = {"commands": 0, "batches": 0, "events": 0, "commit_failures": 0}

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Recover every partition, then start their loops. Safe to await many times."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            try:
                for part in self.partitions.values():
                    await self._recover(part)
                    part.loop_task = asyncio.create_task(self._run(part), name=f"shard-p{part.number}")
            except BaseException as exc:
                self._ready.set_exception(exc)
                self._ready = None
                raise
            self._ready.set_result(None)
        await asyncio.shield(self._ready)

    async def _recover(self, part: _Partition) -> None:
        t0 = time.perf_counter()
        core = part.core
        # 1. fence any older incarnation: init_transactions completes or aborts its open txn
        part.writer = self._make_writer(part.number)
        await asyncio.to_thread(part.writer.init)
        # 2. snapshots, 3. the tail from the checkpoint (minus the idempotency window)
        checkpoint = await asyncio.to_thread(self._load_snapshots, part)
        start = max(0, checkpoint - self.config.dedupe_window)
        core.next_offset = checkpoint
        replayed = await asyncio.to_thread(self._replay, part, start)
        part.recovery_s = time.perf_counter() - t0
        if self.observer is not None:
            self.observer.recovered(part.number, part.recovery_s, len(core.entries), checkpoint)
        log.info(
            "partition %d recovered in %.2fs: %d aggregates, checkpoint %d, %d records replayed",
            part.number, part.recovery_s, len(core.entries), checkpoint, replayed,
        )

    def _load_snapshots(self, part: _Partition) -> int:
        checkpoint = self._snapshots.load_checkpoint(self.topic, part.number)
        if checkpoint is None:
            return 0
        restore = part.core.restore
        decoders = self._state_decoders
        versions = {name: a.state_schema_version for name, a in self._aggregates.items()}
        loaded = []
        for snap in self._snapshots.load_partition(self.topic, part.number):
            if versions.get(snap.aggregate_type) != snap.state_schema_version:
                log.warning(
                    "partition %d: snapshot schema of %s changed; rebuilding from the log",
                    part.number, snap.aggregate_type,
                )
                part.core.entries.clear()
                return 0
            loaded.append(snap)
        for snap in loaded:
            restore(snap.aggregate_type, snap.aggregate_id,
                    decoders[snap.aggregate_type].decode(snap.state), snap.version, snap.offset)
        return checkpoint

    def _replay(self, part: _Partition, start: int) -> int:
        count = 0
        replay = part.core.replay
        for record in self._read_partition(part.number, start):
            env = getattr(record, "envelope", None)
            if env is None:  # undecodable: the write path never wrote it; report and go on
                log.error("partition %d offset %s: undecodable record skipped in recovery: %s",
                          part.number, getattr(record, "offset", "?"), getattr(record, "reason", ""))
                continue
            if env.aggregate_type not in self._aggregates:
                continue
            if replay(record.offset, env.aggregate_type, env.aggregate_id, env.version,
                      env.command_id, record.event):
                part.core.dirty.add(env.aggregate_id)
            count += 1
        return count

    async def stop(self) -> None:
        """Stop the loops, flush a last snapshot and close the writers."""
        for part in self.partitions.values():
            if part.loop_task is not None:
                part.loop_task.cancel()
        for part in self.partitions.values():
            if part.snapshotting is not None:
                await asyncio.gather(part.snapshotting, return_exceptions=True)
            if self.fenced is None and part.core.dirty and not part.core.has_pending:
                await self._start_snapshot(part)
            if part.writer is not None:
                await asyncio.to_thread(part.writer.close)

    # ----------------------------------------------------------------- commands

    async def submit(self, partition: int, commands: list[Command]) -> list[Outcome]:
        """Queue commands for ``partition``; resolve with their outcomes after the commit."""
        if self.fenced is not None:
            return [_fail(c, ServiceUnavailable(str(self.fenced))) for c in commands]
        part = self.partitions.get(partition)
        if part is None:
            return [_fail(c, ServiceUnavailable(f"this shard does not own partition {partition}; "
                                                "the router's assignment is stale")) for c in commands]
        if self._ready is None or not self._ready.done():
            try:
                await asyncio.wait_for(self.start(), self.config.recovery_wait_s)
            except asyncio.TimeoutError:
                return [_fail(c, ShardRecovering()) for c in commands]
        room = self.config.queue_max - part.queued_commands
        rejected: list[Outcome] = []
        if room < len(commands):
            # accept what fits, in order; the rest is refused, retryably
            err = Overloaded(f"shard queue for partition {partition} is full "
                             f"({self.config.queue_max} commands); back off and retry")
            rejected = [_fail(c, err) for c in commands[max(room, 0):]]
            commands = commands[:max(room, 0)]
            if not commands:
                return rejected
        fut: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        part.queue.append(_Queued(commands, fut))
        part.queued_commands += len(commands)
        part.wakeup.set()
        return await fut + rejected

    async def _run(self, part: _Partition) -> None:
        while True:
            await part.wakeup.wait()
            part.wakeup.clear()
            while part.queue:
                taken: list[_Queued] = []
                commands: list[Command] = []
                while part.queue and (not commands or len(commands) + len(part.queue[0].commands)
                                      <= self.config.batch_max):
                    item = part.queue.pop(0)
                    taken.append(item)
                    commands.extend(item.commands)
                part.queued_commands -= len(commands)
                try:
                    outcomes = await self._process(part, commands)
                except Exception as exc:  # noqa: BLE001 - answer every caller, keep the loop alive
                    log.exception("partition %d: batch failed", part.number)
                    err = exc if isinstance(exc, EventrayError) else CommitFailed(str(exc))
                    outcomes = [_fail(c, err) for c in commands]
                if self.observer is not None:
                    now = time.perf_counter()
                    self.observer.answered(part.number, commands, outcomes, [now - i.at for i in taken],
                                           aggregates=len(part.core.entries), next_offset=part.core.next_offset)
                at = 0
                for item in taken:
                    n = len(item.commands)
                    if not item.future.done():
                        item.future.set_result(outcomes[at:at + n])
                    at += n
                if self.fenced is not None:
                    self._fail_queued(part)
                    return
                self._maybe_snapshot(part)

    async def _process(self, part: _Partition, commands: list[Command]) -> list[Outcome]:
        core = part.core
        batch = core.decide(commands)
        self.stats["commands"] += len(commands)
        if not batch.values:
            return core.committed([])
        assert part.writer is not None
        t0 = time.perf_counter()
        try:
            offsets = await asyncio.to_thread(part.writer.append_batch, list(zip(batch.keys, batch.values)))
        except Fenced as exc:
            core.rolled_back()
            self.fenced = exc
            if self.observer is not None:
                self.observer.fenced(part.number)
            log.error("partition %d: fenced by a newer shard incarnation; this one stops", part.number)
            return [_fail(c, ServiceUnavailable(f"shard fenced: {exc}")) for c in commands]
        except Exception as exc:  # noqa: BLE001 - every other failure: roll back and resync
            core.rolled_back()
            self.stats["commit_failures"] += 1
            if self.observer is not None:
                self.observer.commit_failed(part.number)
            log.warning("partition %d: commit failed (%s); re-creating the producer and "
                        "re-reading the tail", part.number, exc)
            await self._resync(part)
            err = exc if isinstance(exc, Retryable) else CommitFailed(f"commit failed: {exc}")
            return [_fail(c, err) for c in commands]
        if self.observer is not None:
            self.observer.committed(part.number, len(commands), time.perf_counter() - t0)
        self.stats["batches"] += 1
        self.stats["events"] += len(offsets)
        part.events_since_snapshot += len(offsets)
        return core.committed(offsets)

    async def _resync(self, part: _Partition) -> None:
        """After an unknown commit result: new producer (fences the old), then read the tail."""
        assert part.writer is not None
        for attempt in range(1, 6):
            try:
                await asyncio.to_thread(part.writer.recreate)
                await asyncio.to_thread(self._replay, part, part.core.next_offset)
                return
            except Fenced as exc:
                self.fenced = exc
                return
            except Exception as exc:  # noqa: BLE001 - retried with backoff, then surfaced
                log.warning("partition %d: resync attempt %d failed: %s", part.number, attempt, exc)
                await asyncio.sleep(min(0.2 * 2 ** attempt, 5.0))
        raise ServiceUnavailable(f"partition {part.number}: could not resync with the log")

    def _fail_queued(self, part: _Partition) -> None:
        err = ServiceUnavailable(f"shard fenced: {self.fenced}")
        while part.queue:
            item = part.queue.pop(0)
            if not item.future.done():
                item.future.set_result([_fail(c, err) for c in item.commands])
        part.queued_commands = 0

    # ----------------------------------------------------------------- snapshots

    def _maybe_snapshot(self, part: _Partition) -> None:
        if part.snapshotting is not None and not part.snapshotting.done():
            return
        due = (part.events_since_snapshot >= self.config.snapshot_every_events
               or time.monotonic() - part.last_snapshot >= self.config.snapshot_interval_s)
        if due and part.core.dirty:
            part.snapshotting = self._start_snapshot(part)

    def _start_snapshot(self, part: _Partition) -> asyncio.Task[None]:
        # Captured synchronously between batches, so every entry taken is committed and
        # next_offset covers all of them; only the encoding and the save run in a thread.
        assert not part.core.has_pending, "snapshot taken while a batch is pending"
        candidates = part.core.snapshot_candidates()
        checkpoint = part.core.next_offset
        part.events_since_snapshot = 0
        part.last_snapshot = time.monotonic()
        return asyncio.create_task(self._save_in_thread(part, candidates, checkpoint))

    async def _save_in_thread(self, part: _Partition, candidates: list[tuple[str, Any]], checkpoint: int) -> None:
        try:
            await asyncio.to_thread(self._save_snapshots, part.number, candidates, checkpoint)
            if self.observer is not None:
                self.observer.snapshot_saved(part.number, checkpoint)
        except Exception as exc:  # noqa: BLE001 - the next snapshot retries these aggregates
            part.core.dirty.update(agg_id for agg_id, _ in candidates)
            log.warning("partition %d: snapshot of %d aggregates failed, will retry: %s",
                        part.number, len(candidates), exc)

    def _save_snapshots(self, partition: int, candidates: list[tuple[str, Any]], checkpoint: int) -> None:
        from eventray.platform.snapshots.store import Snapshot

        encode = self._state_encoder.encode
        schema = {name: a.state_schema_version for name, a in self._aggregates.items()}
        snaps = [
            Snapshot(aggregate_type=name, aggregate_id=agg_id, version=version, partition=partition,
                     offset=offset, state=encode(state), state_schema_version=schema[name])
            for agg_id, (state, version, offset, name) in candidates
        ]
        self._snapshots.save(self.topic, partition, snaps, checkpoint)

    async def flush_snapshots(self) -> None:
        """Snapshot every changed aggregate now (tests, shutdown)."""
        for part in self.partitions.values():
            if part.snapshotting is not None:
                await asyncio.gather(part.snapshotting, return_exceptions=True)
            while part.core.has_pending:
                await asyncio.sleep(0.001)
            part.snapshotting = self._start_snapshot(part)
            await part.snapshotting

    # ----------------------------------------------------------------- reads

    def read(self, partition: int, aggregate_id: str) -> tuple[Any, int] | None:
        """The committed state and version of an aggregate, or ``None``."""
        part = self.partitions.get(partition)
        if part is None:
            raise ServiceUnavailable(f"this shard does not own partition {partition}")
        entry = part.core.read(aggregate_id)
        return None if entry is None else (entry[0], entry[1])

    def describe(self) -> dict[str, Any]:
        return {
            "partitions": {
                p: {"aggregates": len(part.core.entries), "next_offset": part.core.next_offset,
                    "queued": part.queued_commands, "recovery_s": part.recovery_s,
                    "dirty": len(part.core.dirty)}
                for p, part in self.partitions.items()
            },
            "fenced": self.fenced is not None,
            **self.stats,
        }


def _fail(command: Command, exc: BaseException) -> Outcome:
    return Outcome.failure(command.command_id, command.aggregate_id, exc)
