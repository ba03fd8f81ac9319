"""account_activity: one row per money movement, newest first within each account.

``seq`` is the account's version after the movement: unique per account and increasing,
so ``(account_id, seq DESC)`` is both the primary key and the newest-first order. The log
position (partition, offset) is kept as a stable id. ``transfer_id`` and ``counterparty``
are there for transfers (a later saga); plain deposits and withdrawals leave them empty.
"""

from __future__ import annotations

import datetime as dt

from eventray.aggregates.account import MoneyDeposited, MoneyWithdrawn
from eventray.platform.projections import BatchWrites, Projection, Record, Table, handles

__all__ = ["AccountActivity", "at"]

_UTC = dt.timezone.utc


def at(timestamp_ms: int | float) -> dt.datetime:
    """An envelope timestamp (epoch milliseconds) as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(timestamp_ms / 1000, tz=_UTC)


class AccountActivity(Projection):
    """Append-only: one row per deposit or withdrawal."""

    name = "account_activity"
    version = 1
    tables = (
        Table("activity", ("account_id", "seq", "kind", "amount", "balance_after", "at", "correlation_id",
                           "log_partition", "log_offset")),
    )
    schema_sql = """
        CREATE TABLE {schema}.activity (
            account_id     text        NOT NULL,
            seq            bigint      NOT NULL,
            kind           text        NOT NULL,
            amount         bigint      NOT NULL,
            balance_after  bigint      NOT NULL,
            at             timestamptz NOT NULL,
            correlation_id text,
            log_partition  integer     NOT NULL,
            log_offset     bigint      NOT NULL,
            transfer_id    text,
            counterparty   text,
            PRIMARY KEY (account_id, seq)
        );
    """

    def _row(self, record: Record, kind: str) -> tuple[object, ...]:
        env = record.envelope
        e = record.event
        return (env.aggregate_id, env.version, kind, e.amount, e.balance_after, at(env.timestamp),
                env.correlation_id, record.partition, record.offset)

    @handles(MoneyDeposited)
    def deposited(self, record: Record, out: BatchWrites) -> None:
        out.append("activity", self._row(record, "deposit"))

    @handles(MoneyWithdrawn)
    def withdrawn(self, record: Record, out: BatchWrites) -> None:
        out.append("activity", self._row(record, "withdrawal"))
