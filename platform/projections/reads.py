"""Reading a projection's current version from an async pool, across atomic switches.

Queries name tables in the schema of the projection's current version. The pointer lives in
``eventray_projections``; it is cached per pool for a short while, and a query that meets a
schema dropped by a switch (a stale pointer) refreshes it and runs again, so callers never
see the switch.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import psycopg
import psycopg.errors as pge

from eventray.platform._postgres import translate, translated
from eventray.platform.errors import ServiceUnavailable

__all__ = ["ProjectionStatus", "ProjectionUnavailable", "projection_status", "read_current", "schema_name"]

T = TypeVar("T")

#: how long a pool trusts a cached current-version pointer before it reads it again
POINTER_TTL_S = 1.0
_ATTEMPTS = 4

_cache: weakref.WeakKeyDictionary[Any, dict[str, tuple[str, float]]] = weakref.WeakKeyDictionary()


class ProjectionUnavailable(ServiceUnavailable):
    """The projection has no current version yet: build it with ``eventray replay NAME``."""

    code = "PROJECTION_UNAVAILABLE"


def schema_name(name: str, version: int) -> str:
    """The PostgreSQL schema of ``version`` of projection ``name``: ``proj_<name>_v<n>``."""
    return f"proj_{name}_v{version}"


async def _current_schema(pool: Any, name: str, *, refresh: bool) -> str:
    per_pool = _cache.setdefault(pool, {})
    hit = per_pool.get(name)
    now = time.monotonic()
    if hit is not None and not refresh and now - hit[1] < POINTER_TTL_S:
        return hit[0]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT v.schema_name FROM eventray_projections p JOIN eventray_projection_versions v "
            "ON v.name = p.name AND v.version = p.current_version WHERE p.name = %s",
            (name,),
        )
        row = await cur.fetchone()
    if row is None:
        raise ProjectionUnavailable(
            f"projection {name!r} has no current version yet; build it with `eventray replay {name}`",
            projection=name,
        )
    per_pool[name] = (row[0], now)
    return str(row[0])


async def read_current(
    pool: Any, name: str, query: Callable[[psycopg.AsyncConnection[Any], str], Awaitable[T]]
) -> T:
    """Run ``query(conn, schema)`` against the current version of projection ``name``.

    Args:
        pool: a :class:`psycopg_pool.AsyncConnectionPool`.
        name: the projection's name.
        query: reads with ``conn``, naming tables in ``schema`` (quote it with
            :class:`psycopg.sql.Identifier`).

    Raises:
        ProjectionUnavailable: the projection has no current version.
        ServiceUnavailable: PostgreSQL cannot be reached.
    """
    for attempt in range(_ATTEMPTS):
        with translated(f"reading the current version of projection {name!r}"):
            schema = await _current_schema(pool, name, refresh=attempt > 0)
        try:
            async with pool.connection() as conn:
                return await query(conn, schema)
        except (pge.UndefinedTable, pge.InvalidSchemaName, pge.DeadlockDetected) as e:
            # the version we read was switched away from and dropped meanwhile (or is being
            # dropped: DROP SCHEMA takes the view and its table in the other order than a reader
            # of the view, and PostgreSQL breaks the deadlock by failing the reader): read the
            # pointer again and run the query on the new current version
            if attempt == _ATTEMPTS - 1:
                raise translate(e, doing=f"reading projection {name!r}") from e
        except Exception as e:
            if isinstance(e, psycopg.Error):
                raise translate(e, doing=f"reading projection {name!r}") from e
            raise
    raise AssertionError("unreachable")


class ProjectionStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Where a projection's version stands (see ``eventray projections``)."""

    name: str
    version: int
    current: bool
    status: str
    offsets: dict[int, int]
    applied: int
    lag: int | None
    dead_letters: int
    definition_version: int
    status_reason: str | None = None


async def projection_status(pool: Any, *, topic: str | None = None,
                            names: list[str] | None = None) -> list[ProjectionStatus]:
    """Every projection version the runtime knows (not retired): offsets, dead letters, status;
    only those reading ``topic`` and named in ``names`` when given.

    ``lag`` is ``None`` here: it needs the log's end offsets, which the CLI's
    ``eventray projections`` reads from Kafka.
    """
    from eventray.platform.projections.store import STATUS_SQL

    async with pool.connection() as conn:
        cur = await conn.execute(STATUS_SQL)
        rows = await cur.fetchall()
    return [
        ProjectionStatus(name=r[0], version=r[1], current=bool(r[2]), status=r[3],
                         offsets={int(k): int(v) for k, v in (r[4] or {}).items()}, applied=int(r[5] or 0),
                         lag=None, dead_letters=int(r[6]), definition_version=r[7], status_reason=r[8])
        for r in rows if (topic is None or r[9] == topic) and (names is None or r[0] in names)
    ]
