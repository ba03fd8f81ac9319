"""Batch enrichment: a projection's optional step that runs once per batch, before its handlers.

Some read models need something a handler cannot compute alone from one record: a model's
score, fetched in one call for the whole batch, from features that depend on state the read
model keeps (an account's last movement, its running mean). A projection declares it with
``enrich(batch)``; the runtime runs it inside the batch's exactly-once transaction:

1. open the batch's PostgreSQL transaction and lock the partition's offset row; check that
   the stored offset is the one this runner resumed from (else another incarnation wrote
   the partition: the batch is abandoned and the runner reloads its offsets);
2. call ``enrich(batch)`` (plain or ``async``) with the batch's handled records and
   :meth:`EnrichBatch.rows`, which reads the projection's own rows in that transaction, so
   the state it sees is exactly the fold of the log below the stored offset;
3. run the handlers, which read each record's result with ``out.enriched(record)`` and write
   both the derived rows and the new state;
4. write the batch's rows, dead letters and the next offset, and commit.

Replay safety: whatever ``enrich`` returned is stored with the batch (its rows and the
offset commit together), and a batch that does not commit leaves nothing, so every record
is enriched and applied exactly once in the read model. A batch retried after a crash is
enriched again from the same stored state and the same records; it gives the same result
whenever ``enrich`` is a function of those (the alerts projection: features from stored
state, one ONNX model version, recorded in each row). Side effects outside the transaction
do not belong in ``enrich``.

Failures: an exception from ``enrich`` (a model deployment away, the timeout) fails the
whole batch before anything is written; the runner retries it from the stored offset. A
record ``enrich`` cannot handle should be left out of its result instead: its handler's
``out.enriched(record)`` then raises and the record is dead-lettered like any handler error.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from psycopg import sql

from eventray.platform.errors import ConfigurationError, Retryable, ServiceUnavailable
from eventray.platform.eventlog.envelope import DecodedRecord

__all__ = ["EnrichBatch", "EnrichmentMissing", "StaleRunner", "run_enrich"]


class StaleRunner(Retryable):
    """The partition's stored offset is not where this runner resumed: another incarnation wrote it."""

    code = "STALE_RUNNER"


class EnrichmentMissing(KeyError):
    """``out.enriched(record)`` for a record the batch's ``enrich`` left out (the record is dead-lettered)."""


class EnrichBatch:
    """What ``Projection.enrich`` receives: the batch's handled records and a reader of its own rows.

    Attributes:
        records: the decoded records of the batch that the projection handles, in log order.
        partition: the partition of the batch.
    """

    def __init__(self, records: Sequence[DecodedRecord], *, partition: int, cursor: Any = None,
                 schema: str | None = None, tables: Mapping[str, Any] | None = None) -> None:
        self.records = records
        self.partition = partition
        self._cursor = cursor
        self._schema = schema
        self._tables = tables or {}

    def rows(self, table: str, keys: Iterable[Any]) -> dict[Any, dict[str, Any]]:
        """The stored rows of ``table`` (one of the projection's keyed tables) with these keys.

        Read in the batch's transaction: the state as of the partition's stored offset. Keys
        are values for a one-column key, tuples for a compound one; absent rows are left out.
        """
        spec = self._tables.get(table)
        if spec is None or not spec.key:
            raise ConfigurationError(f"enrich can read keyed tables of its projection only; {table!r} is not one")
        wanted = list(dict.fromkeys(keys))
        if not wanted or self._cursor is None or self._schema is None:
            return {}
        single = len(spec.key) == 1
        cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
        target = sql.SQL("{}.{}").format(sql.Identifier(self._schema), sql.Identifier(spec.name))
        if single:
            stmt = sql.SQL("SELECT {} FROM {} WHERE {} = ANY(%s)").format(cols, target, sql.Identifier(spec.key[0]))
            params: tuple[Any, ...] = (wanted,)
        else:
            stmt = sql.SQL("SELECT {} FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
                cols, target, sql.SQL(", ").join(map(sql.Identifier, spec.key)),
                sql.SQL(", ").join(sql.Placeholder() for _ in spec.key))
            params = tuple(list(col) for col in zip(*wanted))
        rows = self._cursor.execute(stmt, params).fetchall()
        index = [spec.columns.index(k) for k in spec.key]
        out: dict[Any, dict[str, Any]] = {}
        for row in rows:
            key = row[index[0]] if single else tuple(row[i] for i in index)
            out[key] = dict(zip(spec.columns, row))
        return out


def run_enrich(projection: Any, batch: EnrichBatch, *, loop: asyncio.AbstractEventLoop | None,
               timeout_s: float) -> dict[int, Any]:
    """Call ``projection.enrich(batch)``; returns ``{log offset: result}`` for the handlers.

    ``enrich`` returns one result per record of ``batch.records`` (a sequence in the same
    order, ``None`` for one it leaves out) or a mapping by log offset. A coroutine runs on
    ``loop`` (the runner's own), bounded by ``timeout_s``.

    Raises:
        ServiceUnavailable: the coroutine did not finish in ``timeout_s``.
        ConfigurationError: the result has the wrong shape.
    """
    result = projection.enrich(batch)
    if inspect.isawaitable(result):
        if loop is None:
            raise ConfigurationError("an async enrich needs the runner's event loop")

        async def bounded() -> Any:
            return await asyncio.wait_for(result, timeout_s)

        try:
            result = loop.run_until_complete(bounded())
        except TimeoutError as e:
            raise ServiceUnavailable(f"{type(projection).__name__}.enrich did not finish in {timeout_s:g}s; "
                                     "the batch will be retried") from e
    if result is None:
        return {}
    if isinstance(result, Mapping):
        return dict(result)
    if len(result) != len(batch.records):
        raise ConfigurationError(f"{type(projection).__name__}.enrich returned {len(result)} results for "
                                 f"{len(batch.records)} records; return one per record (None to leave one out)")
    return {int(r.offset or 0): v for r, v in zip(batch.records, result) if v is not None}
