"""In-memory stand-ins for the log and the snapshot store, for unit tests of shard logic only.

The real adapters are tested against real Kafka and PostgreSQL in tests/integration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eventray.platform.errors import CommitFailed, Fenced
from eventray.platform.snapshots.store import Snapshot


@dataclass
class MemoryLog:
    partitions: dict[int, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    epochs: dict[int, int] = field(default_factory=dict)
    #: the next commits to fail: "abort" (nothing written) or "lost-ack" (written, then error)
    failures: list[str] = field(default_factory=list)

    def writer(self, partition: int) -> MemoryWriter:
        return MemoryWriter(self, partition)

    def read(self, codec, partition: int, start: int):
        records = self.partitions.get(partition, [])
        for offset in range(start, len(records)):
            key, value = records[offset]
            yield codec.decode(value, partition=partition, offset=offset, key=key)


class MemoryWriter:
    def __init__(self, log: MemoryLog, partition: int) -> None:
        self.log = log
        self.partition = partition
        self.epoch = -1

    def init(self) -> None:
        self.epoch = self.log.epochs.get(self.partition, -1) + 1
        self.log.epochs[self.partition] = self.epoch

    def recreate(self) -> None:
        self.init()

    def close(self) -> None:
        pass

    def append_batch(self, records):
        if self.log.epochs[self.partition] != self.epoch:
            raise Fenced("a newer writer owns this partition")
        failure = self.log.failures.pop(0) if self.log.failures else None
        if failure == "abort":
            raise CommitFailed("injected abort")
        part = self.log.partitions.setdefault(self.partition, [])
        start = len(part)
        part.extend(records)
        if failure == "lost-ack":
            raise CommitFailed("injected: committed, but the reply was lost")
        return list(range(start, start + len(records)))


@dataclass
class MemorySnapshots:
    rows: dict[tuple[str, int, str], Snapshot] = field(default_factory=dict)
    checkpoints: dict[tuple[str, int], int] = field(default_factory=dict)

    def save(self, topic, partition, snapshots, checkpoint_offset):
        for s in snapshots:
            key = (topic, partition, s.aggregate_id)
            old = self.rows.get(key)
            if old is None or s.version > old.version:
                self.rows[key] = s
        if checkpoint_offset is not None:
            self.checkpoints[(topic, partition)] = max(checkpoint_offset, self.checkpoints.get((topic, partition), 0))

    def load_partition(self, topic, partition):
        return [s for (t, p, _), s in self.rows.items() if t == topic and p == partition]

    def load_checkpoint(self, topic, partition):
        return self.checkpoints.get((topic, partition))
