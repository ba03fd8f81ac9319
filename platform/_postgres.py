"""Translation of psycopg errors into eventray's error types, shared by the PostgreSQL adapters.

Adapters wrap their driver calls in :func:`translated` so that callers never see
``psycopg.errors.*``: connection trouble and transient conflicts come out retryable,
missing tables come out as a configuration problem that says to run the migrations, and
data the database refuses comes out as a permanent :class:`WriteRejected`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg.errors as pge
import psycopg_pool

from eventray.platform.errors import (
    ConfigurationError,
    EventrayError,
    Retryable,
    ServiceUnavailable,
    WriteRejected,
)


def translate(exc: BaseException, *, doing: str) -> EventrayError:
    """Return the eventray error for a psycopg (or pool) error raised while ``doing``."""
    sqlstate = getattr(exc, "sqlstate", None)
    detail = f"{doing}: {exc}".strip()
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return ServiceUnavailable(f"{doing}: no PostgreSQL connection available ({exc})")
    if isinstance(exc, (pge.UndefinedTable, pge.UndefinedColumn)):
        return ConfigurationError(
            f"{doing}: {exc}. The eventray tables are missing or old: run "
            "eventray.platform.migrations.migrate(dsn) (`eventray dev up` does it)",
            sqlstate=sqlstate,
        )
    if isinstance(exc, (pge.TransactionRollback, pge.LockNotAvailable, pge.QueryCanceled)):
        # serialization failure, deadlock, lock or statement timeout: the same call may pass
        return Retryable(detail, sqlstate=sqlstate)
    if isinstance(exc, (psycopg.IntegrityError, psycopg.DataError)):
        return WriteRejected(detail, sqlstate=sqlstate)
    if isinstance(exc, psycopg.OperationalError) and _refused_by_tls(str(exc)):
        return ConfigurationError(
            f"{doing}: PostgreSQL refused the connection's TLS or certificate ({exc}). Check EVENTRAY_TLS and "
            "the client files EVENTRAY_TLS_CA_FILE, EVENTRAY_TLS_CERT_FILE (its CN must be the database user) "
            "and EVENTRAY_TLS_KEY_FILE; `eventray dev certs` renews the dev stack's", sqlstate=sqlstate)
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
        return ServiceUnavailable(detail, sqlstate=sqlstate)
    return EventrayError(detail, sqlstate=sqlstate)


#: what libpq and the server say when TLS or the client certificate is the problem: sending again
#: fails the same way (a dropped connection, "SSL SYSCALL error", stays retryable)
_TLS_REFUSALS = ("certificate", "alert unknown ca", "no pg_hba.conf entry", "server does not support ssl",
                 "sslmode value", "ssl is not enabled")


def _refused_by_tls(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _TLS_REFUSALS)


@contextmanager
def translated(doing: str) -> Iterator[None]:
    """Re-raise psycopg and pool errors inside the block as eventray errors."""
    try:
        yield
    except (psycopg.Error, psycopg_pool.PoolTimeout) as e:
        raise translate(e, doing=doing) from e
