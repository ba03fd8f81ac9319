"""Aggregate snapshots and per-partition checkpoints in PostgreSQL (ARCHITECTURE.md, write path 4-5).

A shard writes the states it changed, with their version and log offset, off the hot path,
together with the partition's checkpoint offset in one transaction. A new incarnation loads
the partition's snapshots and the checkpoint, then replays the log from the checkpoint,
applying to each aggregate only events newer than its snapshot.

Measured on the dev machine (2 cores, local PostgreSQL 15, ~100-byte states): ``save`` moves
about 190k new snapshots/s (100k upserted as updates: ~100k/s) through binary COPY into a
temporary table and one ``INSERT ... ON CONFLICT``; that is 2.5-3x faster than
``executemany`` in pipeline mode or ``unnest`` of arrays. ``load_partition`` reads 100k
snapshots in about 0.15-0.2 s with binary ``COPY ... TO STDOUT``, which streams rows instead of
holding the whole result twice in memory.

The tables come from ``platform/sql/001_snapshots.sql``; run
:func:`eventray.platform.migrations.migrate` first (``eventray dev up`` does).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType

import msgspec
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from eventray.platform._postgres import translated
from eventray.platform.errors import ServiceUnavailable

__all__ = ["RecoveryPoint", "Snapshot", "SnapshotStore"]

log = logging.getLogger(__name__)


class Snapshot(msgspec.Struct, frozen=True, gc=False):
    """One aggregate's state as of an event in the log.

    Attributes:
        aggregate_type: the aggregate's type name (``"Account"``).
        aggregate_id: the aggregate's id, also its log key.
        version: the number of events folded into ``state``.
        partition: the log partition the aggregate lives in.
        offset: the log offset of the last event folded into ``state``.
        state: the encoded state; the store never looks inside.
        state_schema_version: the version of the state's encoding, for upcasting on load.
    """

    aggregate_type: str
    aggregate_id: str
    version: int
    partition: int
    offset: int
    state: bytes
    state_schema_version: int = 1


class RecoveryPoint(msgspec.Struct, frozen=True, gc=False):
    """A partition's snapshots and checkpoint, read from one consistent database snapshot.

    Attributes:
        checkpoint_offset: where to resume reading the partition (every event below it is in
            ``snapshots``), or None when no checkpoint was saved yet: read from the start.
        snapshots: every snapshot of the partition, in no particular order.
    """

    checkpoint_offset: int | None
    snapshots: list[Snapshot]


_COLUMNS = "topic, aggregate_type, aggregate_id, version, partition, log_offset, state, state_schema_version"
_COPY_TYPES = ["text", "text", "text", "int8", "int4", "int8", "bytea", "int4"]

# ON COMMIT DROP: nothing lingers on pooled connections, and a later migration of the
# real table can never meet a stale staging table. Measured: 0.3 ms per save more than reuse.
_CREATE_STAGING = """
CREATE TEMPORARY TABLE eventray_snapshot_batch (
    topic text, aggregate_type text, aggregate_id text, version bigint, partition integer,
    log_offset bigint, state bytea, state_schema_version integer
) ON COMMIT DROP
"""

_UPSERT_FROM_STAGING = f"""
INSERT INTO eventray_snapshots AS s ({_COLUMNS})
SELECT {_COLUMNS} FROM eventray_snapshot_batch
ON CONFLICT (topic, aggregate_type, aggregate_id) DO UPDATE SET
    version = excluded.version,
    partition = excluded.partition,
    log_offset = excluded.log_offset,
    state = excluded.state,
    state_schema_version = excluded.state_schema_version,
    updated_at = now()
WHERE excluded.version > s.version
"""

_UPSERT_CHECKPOINT = """
INSERT INTO eventray_snapshot_checkpoints AS c (topic, partition, owner, checkpoint_offset)
VALUES (%s, %s, %s, %s)
ON CONFLICT (topic, partition) DO UPDATE SET
    checkpoint_offset = excluded.checkpoint_offset,
    owner = coalesce(excluded.owner, c.owner),
    updated_at = now()
WHERE excluded.checkpoint_offset >= c.checkpoint_offset
RETURNING checkpoint_offset
"""

_COPY_PARTITION_OUT = """
COPY (
    SELECT aggregate_type, aggregate_id, version, partition, log_offset, state, state_schema_version
    FROM eventray_snapshots WHERE topic = %s AND partition = %s
) TO STDOUT (FORMAT BINARY)
"""
_LOAD_TYPES = ["text", "text", "int8", "int4", "int8", "bytea", "int4"]

_SELECT_CHECKPOINT = (
    "SELECT checkpoint_offset FROM eventray_snapshot_checkpoints WHERE topic = %s AND partition = %s"
)


class SnapshotStore:
    """Snapshots and checkpoints of aggregate partitions, over a psycopg connection pool.

    Thread-safe: each call borrows its own connection from the pool, so a shard actor may
    call it from worker threads. Built by the composition root, e.g.
    ``SnapshotStore.open(dsn=settings.dsn)``, or around a pool it shares with other adapters.

    Every method raises eventray errors only: :class:`ServiceUnavailable` or another
    :class:`Retryable` when PostgreSQL is unreachable or the transaction hit a transient
    conflict, :class:`WriteRejected` when the database refused the data, and
    :class:`ConfigurationError` when the tables are missing (migrations not run).
    """

    def __init__(self, *, pool: ConnectionPool, owns_pool: bool = False) -> None:
        """Wrap ``pool``; ``owns_pool=True`` makes :meth:`close` close it too."""
        self._pool = pool
        self._owns_pool = owns_pool

    @classmethod
    def open(
        cls, *, dsn: str, min_size: int = 1, max_size: int = 4, timeout: float = 10.0
    ) -> SnapshotStore:
        """Open a pool of its own on ``dsn`` and wait until it can connect.

        Raises:
            ServiceUnavailable: no connection within ``timeout`` seconds; the message names
                the server so the caller knows which address to check.
        """
        pool = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            name="eventray-snapshots",
            check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": max(1, round(timeout))},
            open=True,
        )
        try:
            with translated(f"connecting the snapshot store to {_redacted(dsn)}"):
                pool.wait(timeout=timeout)
        except ServiceUnavailable:
            pool.close()
            raise
        return cls(pool=pool, owns_pool=True)

    # --- writes ---------------------------------------------------------------------------

    def save(
        self,
        topic: str,
        partition: int,
        snapshots: Sequence[Snapshot],
        checkpoint_offset: int | None,
        *,
        owner: str | None = None,
    ) -> int:
        """Upsert ``snapshots`` and move the partition's checkpoint, in one transaction.

        A snapshot replaces the stored one only when its version is higher, so a late or
        repeated batch never rolls an aggregate back. The checkpoint never moves backwards:
        a lower ``checkpoint_offset`` than the stored one is ignored (and logged), the
        snapshots of that batch are still saved.

        Args:
            topic: the log topic the partition belongs to.
            partition: the partition; every snapshot must belong to it.
            snapshots: changed aggregate states; duplicates of one aggregate are allowed,
                the highest version wins.
            checkpoint_offset: where recovery may resume reading once this commits (every
                event of the partition below it is folded into its snapshots), or None to
                leave the checkpoint as it is.
            owner: who writes (a shard incarnation), stored with the checkpoint for diagnostics.

        Returns:
            The number of snapshot rows inserted or updated (older versions are skipped).

        Raises:
            ValueError: a snapshot belongs to another partition.
            WriteRejected: the database refused a value (negative version or offset, a NUL
                character in an id); nothing of the batch, checkpoint included, is stored.
        """
        batch = _newest_per_aggregate(snapshots, partition)
        if not batch and checkpoint_offset is None:
            return 0
        written = 0
        with translated(f"saving snapshots of {topic}[{partition}]"):
            with self._pool.connection() as conn, conn.transaction():
                # The checkpoint row goes first: its row lock serializes two writers of one
                # partition (a zombie and its successor) instead of letting them deadlock
                # on snapshot rows taken in different orders.
                if checkpoint_offset is not None:
                    stored = conn.execute(
                        _UPSERT_CHECKPOINT, (topic, partition, owner, checkpoint_offset)
                    ).fetchone()
                    if stored is None:
                        log.warning(
                            "checkpoint of %s[%d] not moved back to %d: a higher one is stored",
                            topic,
                            partition,
                            checkpoint_offset,
                        )
                if batch:
                    written = _upsert(conn, topic, batch)
        return written

    def delete_partition(self, topic: str, partition: int) -> int:
        """Delete a partition's snapshots and checkpoint (tests, resets); returns rows deleted."""
        with translated(f"deleting snapshots of {topic}[{partition}]"):
            with self._pool.connection() as conn, conn.transaction():
                deleted = conn.execute(
                    "DELETE FROM eventray_snapshots WHERE topic = %s AND partition = %s",
                    (topic, partition),
                ).rowcount
                conn.execute(
                    "DELETE FROM eventray_snapshot_checkpoints WHERE topic = %s AND partition = %s",
                    (topic, partition),
                )
        return deleted

    # --- reads ----------------------------------------------------------------------------

    def load_partition(self, topic: str, partition: int) -> list[Snapshot]:
        """Every snapshot of one partition of ``topic``, in no particular order."""
        with translated(f"loading snapshots of {topic}[{partition}]"):
            with self._pool.connection() as conn:
                return _copy_out(conn, topic, partition)

    def load_checkpoint(self, topic: str, partition: int) -> int | None:
        """The partition's checkpoint offset, or None when none was saved."""
        with translated(f"loading the checkpoint of {topic}[{partition}]"):
            with self._pool.connection() as conn:
                row = conn.execute(_SELECT_CHECKPOINT, (topic, partition)).fetchone()
        return None if row is None else int(row[0])

    def load_recovery(self, topic: str, partition: int) -> RecoveryPoint:
        """The checkpoint and the snapshots of a partition, read consistently.

        Prefer this to two separate loads: snapshots read before a checkpoint that a
        concurrent writer then moved could miss events below the newer checkpoint.
        """
        with translated(f"loading the recovery point of {topic}[{partition}]"):
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                row = conn.execute(_SELECT_CHECKPOINT, (topic, partition)).fetchone()
                snapshots = _copy_out(conn, topic, partition)
        return RecoveryPoint(
            checkpoint_offset=None if row is None else int(row[0]), snapshots=snapshots
        )

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the pool if this store opened it; a shared pool is left to its owner."""
        if self._owns_pool:
            self._pool.close()

    def __enter__(self) -> SnapshotStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _newest_per_aggregate(snapshots: Sequence[Snapshot], partition: int) -> list[Snapshot]:
    """Check the partition and keep the highest version per aggregate.

    ``INSERT ... ON CONFLICT DO UPDATE`` refuses to touch one row twice in a statement.
    """
    newest: dict[tuple[str, str], Snapshot] = {}
    for s in snapshots:
        if s.partition != partition:
            raise ValueError(
                f"snapshot of {s.aggregate_type} {s.aggregate_id!r} belongs to partition "
                f"{s.partition}, not {partition}: save each partition's snapshots separately"
            )
        key = (s.aggregate_type, s.aggregate_id)
        kept = newest.get(key)
        if kept is None or s.version > kept.version:
            newest[key] = s
    return list(newest.values())


def _upsert(conn: psycopg.Connection, topic: str, batch: list[Snapshot]) -> int:
    conn.execute(_CREATE_STAGING)
    with conn.cursor() as cur:
        with cur.copy(f"COPY eventray_snapshot_batch ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(_COPY_TYPES)
            for s in batch:
                cp.write_row(
                    (
                        topic,
                        s.aggregate_type,
                        s.aggregate_id,
                        s.version,
                        s.partition,
                        s.offset,
                        s.state,
                        s.state_schema_version,
                    )
                )
        cur.execute(_UPSERT_FROM_STAGING)
        return cur.rowcount


def _copy_out(conn: psycopg.Connection, topic: str, partition: int) -> list[Snapshot]:
    with conn.cursor() as cur, cur.copy(_COPY_PARTITION_OUT, (topic, partition)) as cp:
        cp.set_types(_LOAD_TYPES)
        return [Snapshot(*row) for row in cp.rows()]


def _redacted(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the configured database"
    host, port, db = info.get("host", "localhost"), info.get("port", "5432"), info.get("dbname", "")
    return f"{host}:{port}/{db}"
