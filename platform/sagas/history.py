"""A history checker for saga runs: a Python port of the queue checks of Jepsen's Kafka workload.

Jepsen's ``jepsen.tests.kafka`` checker looks at a history of ``send`` and ``poll``
operations and reports, among others:

* **lost** writes: a send acknowledged (``ok``) whose value no poll ever observed, although
  polls read that partition past it;
* **duplicated** values: a value observed at more than one offset;
* **aborted reads**: a poll observed a value whose send failed (``fail``), i.e. the write of
  an aborted transaction.

:func:`check_queue` implements those three checks over a generic history.
:func:`saga_run_history` builds the history of a saga run from the logs themselves:

* sends: each start request the client saw acknowledged (a value in the saga topic), and for
  each saga the coordinators report terminal, the movements its outcome implies (the app says
  which: for the bank's transfers, a completed one's debit and credit, a refunded one's debit
  and refund);
* failed sends: the records of aborted transactions (read ``read_uncommitted``, absent from the
  ``read_committed`` read of the same range);
* polls: what the coordinators read (each transition's ``trigger`` log position, stored in the
  saga topic), plus one final ``read_committed`` read of the event and saga topics.

On top, the saga topic's transitions must number 1..n per saga with no duplicate and no gap:
each transition exactly once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from eventray.platform.tls import TLSFiles

__all__ = ["HistoryReport", "Op", "check_queue", "saga_run_history"]


@dataclass(frozen=True)
class Op:
    """One operation of a history: ``type`` is ``ok``, ``fail`` or ``info`` (indeterminate).

    ``send``: ``value`` is the value id written to ``partition`` (``offset`` when known).
    ``poll``: ``reads`` lists the ``(partition, offset, value id)`` observed.
    """

    type: str
    f: str
    value: Any = None
    partition: Any = None
    offset: int | None = None
    reads: tuple[tuple[Any, int, Any], ...] = ()


@dataclass
class HistoryReport:
    lost: list[Any] = field(default_factory=list)
    duplicated: dict[Any, list[tuple[Any, int]]] = field(default_factory=dict)
    aborted_read: list[Any] = field(default_factory=list)
    transition_errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not (self.lost or self.duplicated or self.aborted_read or self.transition_errors)

    def summary(self) -> str:
        return (f"lost={len(self.lost)} duplicated={len(self.duplicated)} aborted_read={len(self.aborted_read)} "
                f"transition_errors={len(self.transition_errors)} counts={self.counts}"
                + ("" if self.valid else f" examples: lost={self.lost[:3]} dup={list(self.duplicated.items())[:3]} "
                   f"aborted={self.aborted_read[:3]} transitions={self.transition_errors[:3]}"))


def check_queue(history: Iterable[Op]) -> HistoryReport:
    """Jepsen's lost / duplicated / aborted-read checks over ``history``."""
    sends_ok: dict[Any, Op] = {}
    sends_failed: set[Any] = set()
    failed_at: set[tuple[Any, int]] = set()
    sends_any_ok: set[Any] = set()
    seen_at: dict[Any, set[tuple[Any, int]]] = defaultdict(set)
    max_read: dict[Any, int] = defaultdict(lambda: -1)
    n_sends = n_polls = n_reads = 0
    for op in history:
        if op.f == "send":
            n_sends += 1
            if op.type == "ok":
                sends_ok[op.value] = op
                sends_any_ok.add(op.value)
            elif op.type == "fail":
                if op.offset is not None:
                    failed_at.add((op.partition, op.offset))
                else:
                    sends_failed.add(op.value)
        elif op.f == "poll" and op.type == "ok":
            n_polls += 1
            for partition, offset, value in op.reads:
                n_reads += 1
                seen_at[value].add((partition, offset))
                max_read[partition] = max(max_read[partition], offset)
    report = HistoryReport(counts={"sends": n_sends, "polls": n_polls, "reads": n_reads, "values": len(seen_at)})
    for value, op in sends_ok.items():
        if value in seen_at:
            continue
        # lost only if some poll read this partition past the write (else it may just be unread)
        if op.offset is None or max_read.get(op.partition, -1) > op.offset:
            report.lost.append(value)
    report.duplicated = {v: sorted(at, key=repr) for v, at in seen_at.items() if len(at) > 1}
    # A failed write with a known position is read only if a poll saw that very position (a
    # retry may write the same value id again, elsewhere, and commit it). Without a position,
    # by value: a failed send retried successfully later (same value id) is no aborted read.
    report.aborted_read = sorted({v for v, at in seen_at.items() if at & failed_at}, key=repr)
    report.aborted_read += [v for v in sends_failed - sends_any_ok if v in seen_at]
    return report


# --- building a saga run's history from the logs ------------------------------------------------------

def _read_partition(bootstrap: str, topic: str, partition: int, isolation: str,
                    tls: TLSFiles | None = None) -> list[tuple[int, bytes | None, bytes]]:
    from eventray.platform.eventlog.reader import PartitionReader

    reader = PartitionReader(bootstrap=bootstrap, topic=topic, partition=partition,
                             consumer_configs={"isolation_level": isolation}, tls=tls)
    try:
        end = reader.last_stable_offset()
        return [r for batch in reader.read(0, until=end) for r in batch]
    finally:
        reader.close()


def saga_run_history(*, bootstrap: str, event_topic: str, partitions: int, saga_topic: str, saga_partitions: int,
                     acked_starts: Iterable[str], terminal: dict[str, Any], codec: Any,
                     movement: Callable[[Any], tuple[str, str] | None],
                     effects: Callable[[str, Any], Iterable[tuple[str, str]]],
                     tls: TLSFiles | None = None) -> tuple[list[Op], list[str]]:
    """The history of a run, and the exactly-once errors of its saga transitions.

    Args:
        acked_starts: saga ids whose start request was acknowledged to the client.
        terminal: final state per saga id, as the coordinators report it.
        codec: the app's event codec.
        movement: ``event -> (kind, saga id)`` for the events a saga's steps write (each must be
            written at most once), ``None`` for any other event.
        effects: ``(saga id, final state) -> [(kind, saga id)]``: the movements a saga that ended in
            that state must have written exactly once.
    """
    from eventray.platform.eventlog.envelope import DecodedRecord
    from eventray.platform.sagas.records import decode_record

    ops: list[Op] = []
    committed_event: dict[tuple[int, int], Any] = {}
    final_reads: list[tuple[Any, int, Any]] = []
    for p in range(partitions):
        committed = _read_partition(bootstrap, event_topic, p, "read_committed", tls)
        committed_offsets = {o for o, _, _ in committed}
        for rec in codec.decode_many(committed, partition=p):
            if not isinstance(rec, DecodedRecord) or rec.offset is None:
                continue
            vid: Any = movement(rec.event) or ("event", rec.envelope.event_id)
            committed_event[(p, rec.offset)] = vid
            final_reads.append((("events", p), rec.offset, vid))
        # aborted records: in the log (read_uncommitted) but never committed
        for rec in codec.decode_many(_read_partition(bootstrap, event_topic, p, "read_uncommitted", tls), partition=p):
            if isinstance(rec, DecodedRecord) and rec.offset not in committed_offsets:
                vid = movement(rec.event) or ("event", rec.envelope.event_id)
                ops.append(Op("fail", "send", vid, ("events", p), rec.offset))
    seqs: dict[str, list[int]] = defaultdict(list)
    coordinator_reads: list[tuple[Any, int, Any]] = []
    for sp in range(saga_partitions):
        committed = _read_partition(bootstrap, saga_topic, sp, "read_committed", tls)
        committed_offsets = {o for o, _, _ in committed}
        for offset, _, value in committed:
            rec = decode_record(value)
            seqs[rec.saga_id].append(rec.seq)
            final_reads.append((("sagas", sp), offset, ("transition", rec.saga_id, rec.seq)))
            if rec.trigger:
                p, o = (int(x) for x in rec.trigger.split(":"))
                # what the coordinator read at (p, o): the committed value there, or an aborted one
                coordinator_reads.append((("events", p), o, committed_event.get((p, o), ("aborted-or-missing", p, o))))
        for offset, _, value in _read_partition(bootstrap, saga_topic, sp, "read_uncommitted", tls):
            if offset not in committed_offsets:
                rec = decode_record(value)
                ops.append(Op("fail", "send", ("transition", rec.saga_id, rec.seq), ("sagas", sp), offset))
    for sid in acked_starts:
        ops.append(Op("ok", "send", ("transition", sid, 1)))
    for sid, state in terminal.items():
        for key in effects(sid, state):
            ops.append(Op("ok", "send", key))
    ops.append(Op("ok", "poll", reads=tuple(coordinator_reads)))
    ops.append(Op("ok", "poll", reads=tuple(final_reads)))
    errors = []
    for sid, got in seqs.items():
        counts = Counter(got)
        dup = sorted(s for s, n in counts.items() if n > 1)
        if dup or sorted(counts) != list(range(1, len(counts) + 1)):
            errors.append(f"saga {sid}: transitions {sorted(got)} (duplicated {dup})")
    # an aborted-or-missing read by a coordinator is an aborted read: no committed record there
    for (_, p), o, v in coordinator_reads:
        if isinstance(v, tuple) and v and v[0] == "aborted-or-missing":
            ops.append(Op("fail", "send", v, ("events", p), o))
    return ops, errors
