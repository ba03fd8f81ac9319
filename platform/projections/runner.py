"""The per-partition projection runner: read committed records, apply them, store the offset.

One :class:`PartitionRunner` drives one projection version over one partition. For each
batch the reader yields it decodes the records, lets the projection's handlers buffer their
writes, and applies writes, dead letters and the next offset in one PostgreSQL transaction
(:meth:`ProjectionStore.apply_batch`). It starts from the offset stored with the read model,
so a restart, after any crash, continues exactly where the last committed batch ended.

Poison records (undecodable, a handler raising, or a row the database refuses) go to the
dead-letter table; the runner then skips them or stops there, as the projection says.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from eventray.platform.errors import WriteRejected
from eventray.platform.eventlog.envelope import Undecodable
from eventray.platform.projections.definition import Projection
from eventray.platform.projections.enrich import EnrichBatch, StaleRunner, run_enrich
from eventray.platform.projections.store import DeadLetter, ProjectionStore
from eventray.platform.projections.writes import BatchWrites

__all__ = ["FaultPoint", "PartitionRunner"]

log = logging.getLogger(__name__)

#: ``(offset, key, value)``, as the reader yields them
LogRecord = tuple[int, bytes | None, bytes]


class FaultPoint(msgspec.Struct, frozen=True, kw_only=True):
    """A test hook: end the process abruptly at ``stage`` of batch number ``batch``.

    It fires once: it creates ``marker`` before exiting and never fires while ``marker``
    exists, so the restarted runner (same arguments) goes on normally.

    Attributes:
        stage: ``before_commit``: inside the batch's transaction, after every write and the
            offset upsert, before COMMIT; ``after_commit``: right after COMMIT.
        batch: the 1-based number of the batch (of this incarnation) to crash in.
        marker: a file path visible to the runner's process.
    """

    stage: Literal["before_commit", "after_commit"]
    marker: str
    batch: int = 1

    def hit(self, stage: str, batch: int) -> None:
        if stage != self.stage or batch < self.batch:
            return
        marker = Path(self.marker)
        if marker.exists():
            return
        marker.write_text(f"{stage} {batch} pid {os.getpid()}\n")
        log.warning("fault point %s at batch %d: exiting the process", stage, batch)
        os._exit(17)


class PartitionRunner:
    """Applies one projection version to one partition, batch by batch.

    Args:
        projection: the projection definition (pure).
        store: runtime tables and the projection's schema.
        decode_many: the event codec's ``decode_many``.
        open_reader: ``open_reader(partition)`` returns a :class:`PartitionReader`.
        name, version, schema: which build of the projection this runner writes.
        partition: the partition it reads.
        fault: test-only crash point.
    """

    def __init__(
        self,
        *,
        projection: Projection,
        store: ProjectionStore,
        decode_many: Callable[..., list[Any]],
        open_reader: Callable[[int], Any],
        name: str,
        version: int,
        schema: str,
        partition: int,
        fault: FaultPoint | None = None,
    ) -> None:
        self._projection = projection
        self._handlers = projection.handlers
        self._tables = projection.tables
        self._store = store
        self._decode_many = decode_many
        self._open_reader = open_reader
        self.name = name
        self.version = version
        self.schema = schema
        self.partition = partition
        self._fault = fault
        self.batches = 0
        self.applied = 0
        self.next_offset: int | None = None
        self.dead_letters = 0
        self.stopped_on: DeadLetter | None = None
        self.started_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: called with each applied batch's decoded records (the actor's correlation log)
        self.on_batch: Callable[[list[Any]], None] | None = None

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Apply batches until ``stop`` is set or a poison record stops the projection."""
        offset = self.resume()
        if offset is None:
            return
        reader = self._open_reader(self.partition)
        try:
            for batch in reader.tail(offset, stop=stop, yield_empty=True):
                if batch:
                    if not self.process(batch):
                        return
                else:
                    self.store_idle_position(reader.position())
        finally:
            reader.close()

    def resume(self) -> int | None:
        """Load the stored offset to go on from; ``None`` when a switch retired this version."""
        offset = self._store.load_offsets(self.name, self.version).get(self.partition, 0)
        if offset < 0:  # retired by a switch (ProjectionStore.switch): another version is current
            log.info("%s v%d[%d]: retired at offset %d; this runner stops", self.name, self.version,
                     self.partition, -1 - offset)
            return None
        self.next_offset = offset
        self.started_at = self.started_at or time.monotonic()
        return offset

    def store_idle_position(self, position: int) -> None:
        """Store the reader's ``position`` after a poll that brought nothing for this partition.

        Every record below it has been applied; the rest are transaction markers or aborted
        records. Storing it makes the lag of an idle projection 0 (the offset of the last
        record + 1 stops short of the marker). Nothing is written when it did not move.
        """
        if self.next_offset is not None and position > self.next_offset:
            self._store.apply_batch(name=self.name, version=self.version, schema=self.schema,
                                    partition=self.partition, next_offset=position, applied=0, writes=None,
                                    expected_offset=self.next_offset)
            self.next_offset = position

    def process(self, batch: Sequence[LogRecord], decoded: list[Any] | None = None) -> bool:
        """Apply one batch in one transaction. Returns False when the projection must stop.

        ``decoded`` is the batch already decoded (a host decodes once for all its
        projections); records below this runner's next offset are left out.
        """
        if decoded is None:
            decoded = self._decode_many(batch, partition=self.partition)
        start = self.next_offset
        if start is not None and batch and batch[0][0] < start:
            i = bisect.bisect_left(batch, start, key=lambda r: r[0])
            batch, decoded = batch[i:], decoded[i:]
            if not batch:
                return True
        try:
            dead = self._apply(batch, decoded)
        except WriteRejected as e:
            log.warning("%s v%d: the database refused batch %d..%d of partition %d (%s); isolating the record",
                        self.name, self.version, batch[0][0], batch[-1][0], self.partition, e.message)
            return self._one_by_one(batch)
        if self.on_batch is not None:
            self.on_batch(decoded)
        if dead:
            self.dead_letters += len(dead)
            if self._projection.on_poison == "stop":
                return self._stop(dead[-1])
        return True

    def _apply(self, batch: Sequence[LogRecord], decoded: list[Any]) -> list[DeadLetter]:
        """Fold ``batch`` into writes and commit them with the next offset; returns its dead letters."""
        if not self._projection.enriches:
            writes = BatchWrites(self._tables)
            dead, next_offset, count = self._fold(batch, decoded, writes)
            self._commit(next_offset, count, writes, dead)
            return dead
        # enrich reads the read model, so it runs inside the batch's transaction (see .enrich)
        number = self.batches + 1
        fault = self._fault
        store = self._store
        with store.batch_transaction(name=self.name, version=self.version, partition=self.partition) as (cur, stored):
            if self.next_offset is not None and stored != self.next_offset:
                raise StaleRunner(f"{self.name} v{self.version}[{self.partition}]: stored offset {stored}, this "
                                  f"runner is at {self.next_offset}; another runner wrote the partition",
                                  projection=self.name, partition=self.partition)
            handled = [item for item in decoded
                       if type(item) is not Undecodable and type(item.event) in self._handlers]
            enrichment = {}
            if handled:
                enrichment = run_enrich(
                    self._projection, EnrichBatch(handled, partition=self.partition, cursor=cur, schema=self.schema,
                                                  tables={t.name: t for t in self._tables}),
                    loop=self._event_loop(), timeout_s=type(self._projection).enrich_timeout_s)
            writes = BatchWrites(self._tables, enrichment=enrichment)
            dead, next_offset, count = self._fold(batch, decoded, writes)
            store.write_batch(cur, name=self.name, version=self.version, schema=self.schema,
                              partition=self.partition, next_offset=next_offset, applied=count, writes=writes,
                              dead=dead,
                              before_commit=None if fault is None else (lambda: fault.hit("before_commit", number)))
        self._committed(number, next_offset, count)
        return dead

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        # one loop per runner, on the runner's thread: an async enrich's clients bind to it once
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def _fold(self, batch: Sequence[LogRecord], decoded: list[Any],
              writes: BatchWrites) -> tuple[list[DeadLetter], int, int]:
        """Run the handlers; returns ``(dead letters, next offset, records applied)``."""
        dead: list[DeadLetter] = []
        handlers = self._handlers
        stop_mode = self._projection.on_poison == "stop"
        next_offset = batch[-1][0] + 1
        count = len(batch)
        for i, item in enumerate(decoded):
            if type(item) is Undecodable:
                dead.append(self._dead(batch[i], item.reason, item.event_type))
            else:
                handler = handlers.get(type(item.event))
                if handler is None:
                    continue
                try:
                    handler(item, writes)
                except Exception as e:  # a handler bug must not kill the runner: dead-letter it
                    log.warning("%s v%d: handler for %s failed at %d:%d: %s: %s", self.name, self.version,
                                type(item.event).__name__, self.partition, batch[i][0], type(e).__name__, e)
                    dead.append(self._dead(batch[i], f"handler {getattr(handler, '__name__', handler)} failed: "
                                           f"{type(e).__name__}: {e}", item.envelope.event_type))
                else:
                    continue
            if stop_mode:
                next_offset = batch[i][0]
                count = i
                break
        return dead, next_offset, count

    def _commit(self, next_offset: int, count: int, writes: BatchWrites | None, dead: list[DeadLetter]) -> None:
        number = self.batches + 1
        fault = self._fault
        self._store.apply_batch(
            name=self.name, version=self.version, schema=self.schema, partition=self.partition,
            next_offset=next_offset, applied=count, writes=writes, dead=dead,
            before_commit=None if fault is None else (lambda: fault.hit("before_commit", number)),
            expected_offset=self.next_offset,
        )
        self._committed(number, next_offset, count)

    def _committed(self, number: int, next_offset: int, count: int) -> None:
        self.batches = number
        self.applied += count
        self.next_offset = next_offset
        if self._fault is not None:
            self._fault.hit("after_commit", number)

    def _one_by_one(self, batch: Sequence[LogRecord]) -> bool:
        """Apply a batch the database refused record by record, dead-lettering the refused ones."""
        stop_mode = self._projection.on_poison == "stop"
        for record in batch:
            offset = record[0]
            decoded = self._decode_many([record], partition=self.partition)
            item = decoded[0]
            try:
                dead = self._apply([record], decoded)
            except WriteRejected as e:
                event_type = None if type(item) is Undecodable else item.envelope.event_type
                dead = [self._dead(record, f"database refused the record's writes: {e.message}", event_type)]
                self._commit(offset if stop_mode else offset + 1, 0 if stop_mode else 1, None, dead)
            if dead:
                self.dead_letters += len(dead)
                if stop_mode:
                    return self._stop(dead[-1])
        return True

    def _stop(self, poison: DeadLetter) -> bool:
        self.stopped_on = poison
        reason = f"stopped on poison record {poison.partition}:{poison.offset}: {poison.reason}"
        log.error("%s v%d: %s", self.name, self.version, reason)
        self._store.set_status(self.name, self.version, "stopped", reason)
        return False

    def _dead(self, record: LogRecord, reason: str, event_type: str | None) -> DeadLetter:
        return DeadLetter(partition=self.partition, offset=record[0], reason=reason, raw=bytes(record[2]),
                          event_type=event_type, key=record[1])

    def close(self) -> None:
        """Close the runner's store connection."""
        self._store.close()

    def describe(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started_at if self.started_at else 0.0
        return {
            "name": self.name, "version": self.version, "partition": self.partition,
            "next_offset": self.next_offset, "batches": self.batches, "applied": self.applied,
            "dead_letters": self.dead_letters, "events_per_s": self.applied / elapsed if elapsed else 0.0,
            "stopped": self.stopped_on is not None,
        }
