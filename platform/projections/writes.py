"""The batch writer a projection's handlers fill, and its bulk flush into PostgreSQL.

Handlers only buffer: ``append`` (a new row of an append-only table), ``create`` (a new keyed
row) and ``update`` (set columns of a keyed row). Updates to a row created in the same batch
fold into it, and several updates of one row fold into one, so a batch costs one COPY per
table for new rows and one pipelined UPDATE per distinct row changed (from
:data:`BULK_UPDATE_ROWS` rows on, one COPY into a temporary table and one ``UPDATE ... FROM``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psycopg import sql

from eventray.platform.errors import ConfigurationError
from eventray.platform.projections.definition import Table

__all__ = ["BatchWrites"]


class _TableBuffer:
    __slots__ = ("appended", "created", "spec", "updated")

    def __init__(self, spec: Table) -> None:
        self.spec = spec
        self.appended: list[tuple[Any, ...]] = []
        self.created: dict[Any, dict[str, Any]] = {}
        self.updated: dict[Any, dict[str, Any]] = {}


class BatchWrites:
    """Writes buffered for one batch; flushed by the runtime in the batch's transaction."""

    def __init__(self, tables: Iterable[Table], *, enrichment: Mapping[int, Any] | None = None) -> None:
        self._tables = {t.name: _TableBuffer(t) for t in tables}
        self._enrichment = enrichment or {}

    def _buffer(self, table: str) -> _TableBuffer:
        try:
            return self._tables[table]
        except KeyError:
            raise ConfigurationError(f"table {table!r} is not declared in the projection's tables") from None

    # --- what handlers call ------------------------------------------------------------------

    def enriched(self, record: Any) -> Any:
        """The result of the projection's ``enrich`` for ``record`` (see :mod:`.enrich`).

        Raises:
            EnrichmentMissing: ``enrich`` left the record out; the record is dead-lettered.
        """
        try:
            return self._enrichment[record.offset]
        except KeyError:
            from eventray.platform.projections.enrich import EnrichmentMissing

            raise EnrichmentMissing(f"no enrichment for the record at offset {record.offset}") from None

    def append(self, table: str, row: tuple[Any, ...]) -> None:
        """Add a row to an append-only table; values in the table's column order."""
        self._tables[table].appended.append(row)

    def create(self, table: str, row: Mapping[str, Any]) -> None:
        """Add a new row to a keyed table; ``row`` has every declared column."""
        buf = self._buffer(table)
        key = tuple(row[k] for k in buf.spec.key)
        buf.created[key] = dict(row)

    def update(self, table: str, key: Any, **columns: Any) -> None:
        """Set ``columns`` of the row with ``key`` (a value, or a tuple for a compound key)."""
        buf = self._buffer(table)
        k = key if isinstance(key, tuple) else (key,)
        created = buf.created.get(k)
        if created is not None:
            created.update(columns)
            return
        pending = buf.updated.get(k)
        if pending is None:
            buf.updated[k] = columns
        else:
            pending.update(columns)

    # --- what the runtime calls --------------------------------------------------------------

    def __len__(self) -> int:
        return sum(len(b.appended) + len(b.created) + len(b.updated) for b in self._tables.values())

    def flush(self, cur: Any, schema: str) -> None:
        """Write everything buffered with cursor ``cur`` (inside the batch's transaction)."""
        for buf in self._tables.values():
            spec = buf.spec
            target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(spec.name))
            cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
            if buf.created or buf.appended:
                with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(target, cols)) as copy:
                    write_row = copy.write_row
                    for row in buf.appended:
                        write_row(row)
                    if buf.created:
                        names = spec.columns
                        for fields in buf.created.values():
                            write_row([fields[c] for c in names])
            if buf.updated:
                by_shape: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
                for key, changes in buf.updated.items():
                    shape = tuple(changes)
                    by_shape.setdefault(shape, []).append((*changes.values(), *key))
                for n, (shape, params) in enumerate(by_shape.items()):
                    if len(params) >= BULK_UPDATE_ROWS and not set(shape) & set(spec.key):
                        _update_from_copy(cur, target, spec, shape, params, f"eventray_upd_{spec.name}_{n}")
                        continue
                    stmt = sql.SQL("UPDATE {} SET {} WHERE {}").format(
                        target,
                        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in shape),
                        sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in spec.key),
                    )
                    cur.executemany(stmt, params)


#: from this many rows of one shape on, a batch's updates are COPYed into a temporary table and
#: applied by one ``UPDATE ... FROM`` (a catch-up batch changes thousands of rows; one statement
#: per row was a third of a projection host's time, benchmarks/replay)
BULK_UPDATE_ROWS = 256


def _update_from_copy(cur: Any, target: sql.Composable, spec: Table, shape: tuple[str, ...],
                      params: list[tuple[Any, ...]], temp: str) -> None:
    """``UPDATE target SET shape FROM (the rows COPYed into temp) WHERE key matches``, in the transaction."""
    cols = [*shape, *spec.key]
    ident = sql.Identifier(temp)
    col_list = sql.SQL(", ").join(map(sql.Identifier, cols))
    # the target's own column types, no constraints; dropped when the batch's transaction ends
    cur.execute(sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        ident, col_list, target))
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(ident, col_list)) as copy:
        write_row = copy.write_row
        for row in params:
            write_row(row)
    cur.execute(sql.SQL("UPDATE {} AS t SET {} FROM {} AS u WHERE {}").format(
        target,
        sql.SQL(", ").join(sql.SQL("{} = u.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in shape),
        ident,
        sql.SQL(" AND ").join(sql.SQL("t.{} = u.{}").format(sql.Identifier(k), sql.Identifier(k)) for k in spec.key),
    ))
    cur.execute(sql.SQL("DROP TABLE {}").format(ident))
