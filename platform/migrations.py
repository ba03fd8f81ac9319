"""Apply the platform's SQL migrations (``platform/sql/*.sql``) to a PostgreSQL database.

Each file runs once, in name order, in its own transaction, and is recorded in
``eventray_migrations``. A session-level advisory lock serializes concurrent callers (two
``dev up`` runs, several shard actors starting at once), so calling :func:`migrate` again or
from many places at the same time is safe and cheap.

    python -m eventray.platform.migrations [DSN]   # DSN defaults to Settings().dsn
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path
from typing import LiteralString, cast

import psycopg

from eventray.platform._postgres import translated

__all__ = ["MIGRATIONS_DIR", "migrate", "pending"]

log = logging.getLogger(__name__)

#: the SQL files, shipped as package data next to this module
MIGRATIONS_DIR = Path(__file__).resolve().parent / "sql"

# A fixed key for pg_advisory_lock: the first 8 bytes of sha256(b"eventray_migrations").
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"eventray_migrations").digest()[:8], "big", signed=True)

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS eventray_migrations (
    name       text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def _files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("*.sql"), key=lambda p: p.name)


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def migrate(dsn: str, *, connect_timeout: float = 10.0) -> list[str]:
    """Apply every migration not applied yet, in name order, each in its own transaction.

    Args:
        dsn: PostgreSQL conninfo string or URL (``Settings.dsn``).
        connect_timeout: seconds to wait for the server to accept the connection.

    Returns:
        The names of the files applied by this call, in order; empty when the database was
        already up to date (or a concurrent caller applied them first).

    Raises:
        ServiceUnavailable: the server could not be reached.
        EventrayError: a migration failed; it is rolled back, earlier ones stay applied.
    """
    applied_now: list[str] = []
    with translated("connecting to PostgreSQL to migrate"):
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, round(connect_timeout)))
    with conn:
        with translated("taking the migration lock"):
            # Session-level: held across the per-file transactions, released on close too.
            conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            with translated("creating eventray_migrations"):
                conn.execute(_CREATE_TABLE)
                rows = conn.execute("SELECT name, checksum FROM eventray_migrations").fetchall()
                done: dict[str, str] = {name: checksum for name, checksum in rows}
            for path in _files():
                text = path.read_text(encoding="utf-8")
                checksum = _checksum(text)
                if path.name in done:
                    if done[path.name] != checksum:
                        log.warning(
                            "migration %s changed after it was applied; the database keeps the "
                            "old version (add a new file instead of editing an applied one)",
                            path.name,
                        )
                    continue
                with translated(f"applying migration {path.name}"), conn.transaction():
                    # A file may hold several statements; without parameters psycopg sends
                    # it as one simple query. The text is ours (package data), not user input.
                    conn.execute(cast(LiteralString, text))
                    conn.execute(
                        "INSERT INTO eventray_migrations (name, checksum) VALUES (%s, %s)",
                        (path.name, checksum),
                    )
                log.info("applied migration %s", path.name)
                applied_now.append(path.name)
        finally:
            # Closing the session releases the lock anyway; unlocking early just lets a
            # waiting caller go on before our connection is torn down.
            if not conn.broken:
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
                except psycopg.Error as e:
                    log.warning("could not release the migration lock (closing instead): %s", e)
    return applied_now


def pending(dsn: str) -> list[str]:
    """Names of the migrations not applied yet to the database at ``dsn`` (no lock taken)."""
    with translated("reading eventray_migrations"), psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('eventray_migrations') IS NOT NULL").fetchone()
        done: set[str] = set()
        if exists and exists[0]:
            done = {row[0] for row in conn.execute("SELECT name FROM eventray_migrations")}
    return [p.name for p in _files() if p.name not in done]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: migrate the database given as the only argument, else Settings().dsn."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        dsn = args[0]
    else:
        from eventray.platform.settings import Settings

        dsn = Settings().dsn
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    applied = migrate(dsn)
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
