"""The projection runtime's PostgreSQL side: versions, offsets, dead letters, the switch.

Every batch a runner applies is one transaction here: the projection's writes, the dead
letters of the batch and the upsert of the partition's next offset commit together or not
at all, so a read model always equals the fold of the log below its stored offsets.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from eventray.platform._postgres import translated
from eventray.platform.projections.reads import schema_name
from eventray.platform.projections.writes import BatchWrites

__all__ = ["STATUS_SQL", "DeadLetter", "ProjectionStore", "VersionInfo"]

log = logging.getLogger(__name__)

STATUS_SQL = """
SELECT v.name, v.version, coalesce(p.current_version = v.version, false) AS current, v.status,
       (SELECT jsonb_object_agg(o.partition, o.next_offset) FROM eventray_projection_offsets o
         WHERE o.name = v.name AND o.version = v.version) AS offsets,
       (SELECT sum(o.applied) FROM eventray_projection_offsets o
         WHERE o.name = v.name AND o.version = v.version) AS applied,
       (SELECT count(*) FROM eventray_projection_dead_letters d
         WHERE d.name = v.name AND d.version = v.version) AS dead_letters,
       v.definition_version, v.status_reason, v.topic, v.partitions
  FROM eventray_projection_versions v LEFT JOIN eventray_projections p ON p.name = v.name
 WHERE v.status <> 'retired'
 ORDER BY v.name, v.version
"""

_UPSERT_OFFSET = (
    "INSERT INTO eventray_projection_offsets (name, version, partition, next_offset, applied) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (name, version, partition) DO UPDATE SET "
    "next_offset = EXCLUDED.next_offset, applied = eventray_projection_offsets.applied + EXCLUDED.applied, "
    "updated_at = now()"
)
#: the same, only where the stored offset is the one the writer resumed from (its fence)
_UPSERT_OFFSET_FROM = _UPSERT_OFFSET + " WHERE eventray_projection_offsets.next_offset = %s"

_INSERT_DEAD = (
    "INSERT INTO eventray_projection_dead_letters "
    "(name, version, partition, log_offset, reason, event_type, record_key, raw) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name, version, partition, log_offset) DO NOTHING"
)


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A poison record: where it was, why, and its bytes."""

    partition: int
    offset: int
    reason: str
    raw: bytes
    event_type: str | None = None
    key: bytes | None = None


class VersionInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: int
    schema: str
    topic: str
    partitions: int
    status: str


class ProjectionStore:
    """Synchronous access to the runtime tables and the projection schemas.

    Args:
        dsn: PostgreSQL conninfo.
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            with translated("connecting to PostgreSQL for projections"):
                self._conn = psycopg.connect(self._dsn, autocommit=True)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- versions ----------------------------------------------------------------------------

    def current_version(self, name: str) -> int | None:
        with translated(f"reading the current version of {name!r}"):
            row = self.conn.execute(
                "SELECT current_version FROM eventray_projections WHERE name = %s", (name,)
            ).fetchone()
        return None if row is None else int(row[0])

    def current_versions(self, topic: str, names: Sequence[str]) -> dict[str, int]:
        """``{name: current version}`` of the projections among ``names`` whose current version reads ``topic``."""
        with translated(f"reading the current projection versions of topic {topic!r}"):
            rows = self.conn.execute(
                "SELECT p.name, p.current_version FROM eventray_projections p JOIN eventray_projection_versions v "
                "ON v.name = p.name AND v.version = p.current_version WHERE v.topic = %s AND p.name = ANY(%s) "
                "ORDER BY p.name", (topic, list(names)),
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def version_info(self, name: str, version: int) -> VersionInfo | None:
        with translated(f"reading projection {name!r} v{version}"):
            row = self.conn.execute(
                "SELECT schema_name, topic, partitions, status FROM eventray_projection_versions "
                "WHERE name = %s AND version = %s", (name, version),
            ).fetchone()
        if row is None:
            return None
        return VersionInfo(name=name, version=version, schema=row[0], topic=row[1], partitions=row[2], status=row[3])

    def create_version(self, name: str, *, ddl: Callable[[str], str], topic: str, partitions: int,
                       definition_version: int) -> VersionInfo:
        """Register the next version of ``name`` and create its schema, in one transaction."""
        with translated(f"creating a new version of projection {name!r}"), self.conn.transaction():
            # serialise concurrent replays of the same projection
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('eventray_projection:' || %s))", (name,))
            row = self.conn.execute(
                "SELECT coalesce(max(version), 0) FROM eventray_projection_versions WHERE name = %s", (name,)
            ).fetchone()
            version = int(row[0]) + 1 if row else 1
            schema = schema_name(name, version)
            self.conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            self.conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            self.conn.execute(ddl(schema).encode())
            self.conn.execute(
                "INSERT INTO eventray_projection_versions "
                "(name, version, schema_name, topic, partitions, definition_version) VALUES (%s, %s, %s, %s, %s, %s)",
                (name, version, schema, topic, partitions, definition_version),
            )
            self.conn.cursor().executemany(
                "INSERT INTO eventray_projection_offsets (name, version, partition, next_offset) "
                "VALUES (%s, %s, %s, 0)",
                [(name, version, p) for p in range(partitions)],
            )
        return VersionInfo(name=name, version=version, schema=schema, topic=topic, partitions=partitions,
                           status="building")

    def set_status(self, name: str, version: int, status: str, reason: str | None = None) -> None:
        with translated(f"setting the status of {name!r} v{version}"):
            self.conn.execute(
                "UPDATE eventray_projection_versions SET status = %s, status_reason = %s, updated_at = now() "
                "WHERE name = %s AND version = %s", (status, reason, name, version),
            )

    def switch(self, name: str, new: int) -> bool:
        """Make ``new`` the current version of ``name``, atomically, if it has caught up.

        In one transaction: lock the current version's offset rows (its runners cannot commit
        meanwhile), check that ``new`` has read at least as far on every partition, fence the
        old version's runners (its offsets become ``-1 - n``), then move the pointer. Readers
        therefore never go back in time across the switch.

        A current version that reads another topic (another app's, or a test's) is not compared
        with: the caller builds ``new`` to its own topic's head first.

        Returns:
            False when ``new`` is still behind the current version (try again shortly).
        """
        with translated(f"switching projection {name!r} to v{new}"), self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('eventray_projection:' || %s))", (name,))
            row = self.conn.execute(
                "SELECT current_version FROM eventray_projections WHERE name = %s FOR UPDATE", (name,)
            ).fetchone()
            old = None if row is None else int(row[0])
            topics = dict(self.conn.execute(
                "SELECT version, topic FROM eventray_projection_versions WHERE name = %s AND version = ANY(%s)",
                (name, [v for v in (old, new) if v is not None]),
            ).fetchall())
            if old is not None and old != new and topics.get(old) == topics.get(new):
                olds = dict(self.conn.execute(
                    "SELECT partition, next_offset FROM eventray_projection_offsets "
                    "WHERE name = %s AND version = %s FOR UPDATE", (name, old),
                ).fetchall())
                news = dict(self.conn.execute(
                    "SELECT partition, next_offset FROM eventray_projection_offsets "
                    "WHERE name = %s AND version = %s", (name, new),
                ).fetchall())
                if any(news.get(p, -1) < off for p, off in olds.items()):
                    return False
            if old is not None and old != new:
                # fence the old version's runners: their next batch's conditional upsert (and the
                # lock of an enriching batch) no longer finds the offset it resumed from, so nothing
                # lands in the old tables after the switch and a reader still on the old pointer
                # never sees more than the new version has. Stored as -1 - n: retired at offset n.
                self.conn.execute("UPDATE eventray_projection_offsets SET next_offset = -1 - next_offset "
                                  "WHERE name = %s AND version = %s AND next_offset >= 0", (name, old))
            self.conn.execute(
                "INSERT INTO eventray_projections (name, current_version) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET current_version = EXCLUDED.current_version, switched_at = now()",
                (name, new),
            )
            self.conn.execute(
                "UPDATE eventray_projection_versions SET status = CASE WHEN version = %s THEN 'live' ELSE 'retired' "
                "END, updated_at = now() WHERE name = %s AND (version = %s OR version = %s)",
                (new, name, new, old if old is not None else new),
            )
        return True

    def drop_version(self, name: str, version: int) -> None:
        """Drop a retired version's schema and its offsets and dead letters."""
        with translated(f"dropping projection {name!r} v{version}"), self.conn.transaction():
            cur = self.conn.execute("SELECT current_version FROM eventray_projections WHERE name = %s", (name,))
            row = cur.fetchone()
            if row is not None and int(row[0]) == version:
                raise ValueError(f"refusing to drop the current version {version} of {name!r}")
            self.conn.execute("SET LOCAL lock_timeout = '30s'")
            self.conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema_name(name, version))))
            self.conn.execute("DELETE FROM eventray_projection_versions WHERE name = %s AND version = %s",
                              (name, version))

    # --- runners -----------------------------------------------------------------------------

    def load_offsets(self, name: str, version: int) -> dict[int, int]:
        with translated(f"loading offsets of {name!r} v{version}"):
            rows = self.conn.execute(
                "SELECT partition, next_offset FROM eventray_projection_offsets WHERE name = %s AND version = %s",
                (name, version),
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def progress(self, name: str, version: int) -> tuple[dict[int, int], int]:
        """``({partition: next_offset}, records applied)`` of a version."""
        with translated(f"reading progress of {name!r} v{version}"):
            rows = self.conn.execute(
                "SELECT partition, next_offset, applied FROM eventray_projection_offsets "
                "WHERE name = %s AND version = %s", (name, version),
            ).fetchall()
        return {int(p): int(o) for p, o, _ in rows}, sum(int(a) for *_, a in rows)

    def apply_batch(
        self,
        *,
        name: str,
        version: int,
        schema: str,
        partition: int,
        next_offset: int,
        applied: int,
        writes: BatchWrites | None,
        dead: Sequence[DeadLetter] = (),
        before_commit: Callable[[], None] | None = None,
        expected_offset: int | None = None,
    ) -> None:
        """One transaction: the batch's writes, its dead letters and the partition's offset.

        With ``expected_offset`` the transaction commits only if the partition's stored offset
        is still that one (where this runner resumed): a second runner of the same partition
        (a zombie, or a rescale that went wrong) gets :class:`StaleRunner` and writes nothing.

        Raises:
            StaleRunner: the stored offset moved: another runner wrote the partition.
            WriteRejected: the database refused a write (the caller isolates the record).
            ServiceUnavailable, Retryable: PostgreSQL trouble; nothing was applied.
        """
        conn = self.conn
        with translated(f"applying a batch of {name!r} v{version} partition {partition}"), conn.transaction():
            self.write_batch(conn.cursor(), name=name, version=version, schema=schema, partition=partition,
                             next_offset=next_offset, applied=applied, writes=writes, dead=dead,
                             before_commit=before_commit, expected_offset=expected_offset)

    @staticmethod
    def write_batch(cur: Any, *, name: str, version: int, schema: str, partition: int, next_offset: int,
                    applied: int, writes: BatchWrites | None, dead: Sequence[DeadLetter] = (),
                    before_commit: Callable[[], None] | None = None, expected_offset: int | None = None) -> None:
        """The writes of :meth:`apply_batch` with ``cur``, inside a transaction the caller holds."""
        if writes is not None:
            writes.flush(cur, schema)
        if dead:
            cur.executemany(_INSERT_DEAD, [
                (name, version, d.partition, d.offset, d.reason, d.event_type, d.key, d.raw) for d in dead
            ])
        if expected_offset is None:
            cur.execute(_UPSERT_OFFSET, (name, version, partition, next_offset, applied))
        else:
            cur.execute(_UPSERT_OFFSET_FROM, (name, version, partition, next_offset, applied, expected_offset))
            if cur.rowcount != 1:  # raising rolls the batch's writes back with it
                from eventray.platform.projections.enrich import StaleRunner

                raise StaleRunner(f"{name} v{version}[{partition}]: the stored offset is no longer {expected_offset}; "
                                  f"another runner wrote the partition (this one resumes from the stored offset)",
                                  projection=name, partition=partition)
        if before_commit is not None:
            before_commit()

    @contextlib.contextmanager
    def batch_transaction(self, *, name: str, version: int, partition: int) -> Iterator[tuple[Any, int]]:
        """A batch's transaction with the partition's offset row locked: yields ``(cursor, stored offset)``.

        For batches that read the read model before writing it (a projection's ``enrich``):
        the lock keeps any other writer of the partition out until COMMIT, and the stored
        offset (0 before the first batch) tells the caller whether it resumed where it thinks.
        Commits when the block ends, rolls back when it raises.
        """
        conn = self.conn
        with translated(f"applying a batch of {name!r} v{version} partition {partition}"), conn.transaction():
            cur = conn.cursor()
            lock = ("SELECT next_offset FROM eventray_projection_offsets WHERE name = %s AND version = %s "
                    "AND partition = %s FOR UPDATE")
            row = cur.execute(lock, (name, version, partition)).fetchone()
            if row is None:  # the first batch: make the row, so that there is something to lock
                cur.execute("INSERT INTO eventray_projection_offsets (name, version, partition, next_offset) "
                            "VALUES (%s, %s, %s, 0) ON CONFLICT DO NOTHING", (name, version, partition))
                row = cur.execute(lock, (name, version, partition)).fetchone()
            yield cur, 0 if row is None else int(row[0])

    def dead_letters(self, name: str, version: int) -> list[DeadLetter]:
        with translated(f"reading dead letters of {name!r} v{version}"):
            rows = self.conn.execute(
                "SELECT partition, log_offset, reason, raw, event_type, record_key "
                "FROM eventray_projection_dead_letters WHERE name = %s AND version = %s ORDER BY id",
                (name, version),
            ).fetchall()
        return [DeadLetter(partition=r[0], offset=r[1], reason=r[2], raw=bytes(r[3]), event_type=r[4],
                           key=None if r[5] is None else bytes(r[5])) for r in rows]

    def status_rows(self) -> list[tuple[Any, ...]]:
        with translated("reading projection status"):
            return self.conn.execute(STATUS_SQL).fetchall()
