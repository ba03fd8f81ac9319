"""The in-memory heart of a shard: one partition's aggregates, decided batch by batch.

``PartitionCore`` is plain Python with no I/O. The shard actor drives it:

1. ``decide(commands)`` runs every command of a batch in order against the in-memory
   states, producing outcomes and the encoded log records, and remembers how to undo;
2. the actor commits the records in one Kafka transaction;
3. ``committed(offsets)`` makes the batch permanent, or ``rolled_back()`` restores the
   pre-batch states when the commit failed.

Replies leave only after step 3, so an acknowledged command is always in the log.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eventray.platform.domain import AggregateType, Command, Event
from eventray.platform.errors import (
    ConcurrencyConflict,
    DomainError,
    EventrayError,
    InvalidCommand,
)
from eventray.platform.runtime.outcome import Outcome

log = logging.getLogger("eventray.shard")

#: (state, version, offset of the aggregate's last record, aggregate type name)
Entry = tuple[Any, int, int, str]

EncodeRecord = Callable[..., bytes]


@dataclass(slots=True)
class PendingBatch:
    """A decided batch waiting for its Kafka commit."""

    outcomes: list[Outcome]
    keys: list[bytes]
    values: list[bytes]
    #: record index -> aggregate id, to give each entry the offset of its last record
    record_owner: list[str]
    undo: dict[str, Entry | None]
    #: command ids decided in this batch -> index into outcomes
    fresh: dict[str, int]


class PartitionCore:
    """States, versions and recent command ids of one partition's aggregates.

    Args:
        aggregates: the aggregate types this partition hosts.
        encode: builds one log record value from an event and its envelope fields
            (keyword arguments ``event_id``, ``aggregate_type``, ``aggregate_id``, ``version``,
            ``command_id``, ``correlation_id``, ``subject``).
        dedupe_window: how many recent command ids to remember for idempotency.
    """

    def __init__(
        self,
        *,
        aggregates: Iterable[AggregateType[Any]],
        encode: EncodeRecord,
        dedupe_window: int = 100_000,
    ) -> None:
        self._by_command: dict[type[Command], AggregateType[Any]] = {}
        self._by_name: dict[str, AggregateType[Any]] = {}
        for agg in aggregates:
            self._by_name[agg.name] = agg
            for cmd in agg.commands:
                self._by_command[cmd] = agg
        self._encode = encode
        self._window = dedupe_window
        self.entries: dict[str, Entry] = {}
        #: command_id -> version after its first application, with its events (decided by this
        #: incarnation or replayed from the log: a repeat reports the same either way; bounded
        #: by the window, as the decided ones always were)
        self.seen: dict[str, int | tuple[int, tuple[Event, ...]]] = {}
        self._seen_order: deque[str] = deque()
        #: aggregate ids changed since the last snapshot
        self.dirty: set[str] = set()
        #: offset just past the last record this core has applied (committed or replayed)
        self.next_offset = 0
        self._pending: PendingBatch | None = None

    # ------------------------------------------------------------------ write path

    def decide(self, commands: Sequence[Command]) -> PendingBatch:
        """Decide every command in order; return the batch to commit."""
        if self._pending is not None:
            raise RuntimeError("decide() called before the previous batch was settled")
        entries = self.entries
        encode = self._encode
        batch = PendingBatch([], [], [], [], {}, {})
        outcomes, keys, values, owners, undo, fresh = (
            batch.outcomes, batch.keys, batch.values, batch.record_owner, batch.undo, batch.fresh,
        )
        for command in commands:
            cid = command.command_id
            agg_id = command.aggregate_id
            first = self.seen.get(cid)
            if first is not None:
                if isinstance(first, tuple):
                    version_after, first_events = first
                else:
                    version_after, first_events = first, ()
                outcomes.append(
                    Outcome(command_id=cid, aggregate_id=agg_id, version=version_after,
                            events=first_events, duplicate=True)
                )
                continue
            if cid in fresh:
                prior = outcomes[fresh[cid]]
                outcomes.append(prior if not prior.ok else _as_duplicate(prior))
                continue
            agg = self._by_command.get(type(command))
            entry = entries.get(agg_id)
            version = entry[1] if entry is not None else 0
            try:
                if agg is None:
                    raise InvalidCommand(f"no aggregate handles {type(command).__name__}")
                if entry is not None and entry[3] != agg.name:
                    raise InvalidCommand(
                        f"{agg_id!r} is a {entry[3]}, not a {agg.name}; use another id"
                    )
                expected = command.expected_version
                if expected is not None and expected != version:
                    raise ConcurrencyConflict(
                        f"{agg.name} {agg_id!r} is at version {version}, "
                        f"the command expected {expected}; reload and retry",
                        current_version=version,
                    )
                events = agg.decide(entry[0] if entry is not None else None, command)
            except DomainError as exc:
                fresh[cid] = len(outcomes)
                outcomes.append(Outcome.failure(cid, agg_id, exc, version))
                continue
            except Exception as exc:  # noqa: BLE001 - a bug in decide must not kill the shard
                log.exception("decide failed for %s %s", type(command).__name__, cid)
                err = EventrayError(f"internal error in {type(command).__name__}: {exc}")
                fresh[cid] = len(outcomes)
                outcomes.append(Outcome.failure(cid, agg_id, err, version))
                continue
            if events:
                if agg_id not in undo:
                    undo[agg_id] = entry
                state = entry[0] if entry is not None else None
                key = agg_id.encode()
                evolve = agg.evolve
                for event in events:
                    version += 1
                    state = evolve(state, event)
                    keys.append(key)
                    values.append(
                        encode(
                            event,
                            # deterministic: the same event always has the same id
                            event_id=f"{agg_id}:{version}",
                            aggregate_type=agg.name,
                            aggregate_id=agg_id,
                            version=version,
                            command_id=cid,
                            correlation_id=command.correlation_id,
                            subject=command.subject,
                        )
                    )
                    owners.append(agg_id)
                entries[agg_id] = (state, version, -1, agg.name)
            fresh[cid] = len(outcomes)
            outcomes.append(
                Outcome(command_id=cid, aggregate_id=agg_id, version=version, events=tuple(events))
            )
        self._pending = batch
        return batch

    def committed(self, offsets: Sequence[int]) -> list[Outcome]:
        """The batch's records are committed at ``offsets``; make it permanent."""
        batch = self._take_pending()
        entries = self.entries
        for agg_id, offset in zip(batch.record_owner, offsets):
            state, version, _, name = entries[agg_id]
            entries[agg_id] = (state, version, offset, name)
        self.dirty.update(batch.undo)
        if offsets:
            self.next_offset = max(self.next_offset, offsets[-1] + 1)
        for outcome in batch.outcomes:
            if outcome.ok and not outcome.duplicate:
                self._remember(outcome.command_id, (outcome.version, outcome.events))
        return batch.outcomes

    def rolled_back(self) -> None:
        """The commit failed: restore every state the batch touched."""
        batch = self._take_pending()
        for agg_id, entry in batch.undo.items():
            if entry is None:
                self.entries.pop(agg_id, None)
            else:
                self.entries[agg_id] = entry

    @property
    def has_pending(self) -> bool:
        """True while a decided batch waits for its commit."""
        return self._pending is not None

    def _take_pending(self) -> PendingBatch:
        batch = self._pending
        if batch is None:
            raise RuntimeError("no batch is pending")
        self._pending = None
        return batch

    def _remember(self, cid: str, first: int | tuple[int, tuple[Event, ...]]) -> None:
        seen = self.seen
        if cid not in seen:
            self._seen_order.append(cid)
            if len(self._seen_order) > self._window:
                seen.pop(self._seen_order.popleft(), None)
        seen[cid] = first

    # --------------------------------------------------------------- recovery path

    def restore(self, aggregate_type: str, aggregate_id: str, state: Any, version: int, offset: int) -> None:
        """Load a snapshot."""
        self.entries[aggregate_id] = (state, version, offset, aggregate_type)

    def replay(
        self,
        offset: int,
        aggregate_type: str,
        aggregate_id: str,
        version: int,
        command_id: str | None,
        event: Event,
    ) -> bool:
        """Apply one committed record during recovery; return True if it changed state.

        A record at or below the aggregate's current version is already reflected (by a
        snapshot) and only feeds the idempotency index.
        """
        if offset >= self.next_offset:
            self.next_offset = offset + 1
        entry = self.entries.get(aggregate_id)
        current = entry[1] if entry is not None else 0
        if command_id:
            self._remember_replayed(command_id, aggregate_id, version, event)
        if version <= current:
            return False
        agg = self._by_name[aggregate_type]
        state = agg.evolve(entry[0] if entry is not None else None, event)
        self.entries[aggregate_id] = (state, version, offset, aggregate_type)
        return True

    def _remember_replayed(self, cid: str, agg_id: str, version: int, event: Event) -> None:
        # the command's events, in log order, and the version after the last: a repeat answered
        # after a recovery reports the first application's events, as one answered before it does
        first = self.seen.get(cid)
        if first is None:
            self._remember(cid, (version, (event,)))
        elif isinstance(first, tuple) and version > first[0]:
            self.seen[cid] = (version, (*first[1], event))

    def snapshot_candidates(self) -> list[tuple[str, Entry]]:
        """Take the changed entries for a snapshot and clear the dirty set."""
        entries = self.entries
        taken = [(agg_id, entries[agg_id]) for agg_id in self.dirty if agg_id in entries]
        self.dirty = set()
        return taken

    def read(self, aggregate_id: str) -> Entry | None:
        """The committed entry of an aggregate (read-your-writes).

        While a batch waits for its commit, its aggregates read as they were before it.
        """
        pending = self._pending
        if pending is not None and aggregate_id in pending.undo:
            return pending.undo[aggregate_id]
        return self.entries.get(aggregate_id)


def _as_duplicate(outcome: Outcome) -> Outcome:
    return Outcome(
        command_id=outcome.command_id,
        aggregate_id=outcome.aggregate_id,
        version=outcome.version,
        events=outcome.events,
        duplicate=True,
    )

