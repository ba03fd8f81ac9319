"""account_activity: one row per money movement, newest first within each account.

``seq`` is the account's version after the movement: unique per account and increasing,
so ``(account_id, seq DESC)`` is both the primary key and the newest-first order. The log
position (partition, offset) is kept as a stable id. ``transfer_id`` and ``counterparty``
are set for transfers (the TransferMoney saga: ``transfer_out`` on the source,
``transfer_in`` on the target, ``transfer_refund`` when a failed transfer is compensated);
plain deposits and withdrawals leave them empty.
"""

from __future__ import annotations

import datetime as dt

from eventray.aggregates.account import (
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
    TransferRefunded,
)
from eventray.platform.projections import BatchWrites, Projection, Record, Table, handles

__all__ = ["AccountActivity", "at"]

_UTC = dt.timezone.utc


def at(timestamp_ms: int | float) -> dt.datetime:
    """An envelope timestamp (epoch milliseconds) as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(timestamp_ms / 1000, tz=_UTC)


class AccountActivity(Projection):
    """Append-only: one row per deposit, withdrawal or transfer movement."""

    name = "account_activity"
    version = 2
    tables = (
        Table("activity", ("account_id", "seq", "kind", "amount", "balance_after", "at", "correlation_id",
                           "log_partition", "log_offset", "transfer_id", "counterparty")),
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
                env.correlation_id, record.partition, record.offset,
                getattr(e, "transfer_id", None), getattr(e, "counterparty", None))

    @handles(MoneyDeposited)
    def deposited(self, record: Record, out: BatchWrites) -> None:
        out.append("activity", self._row(record, "deposit"))

    @handles(MoneyWithdrawn)
    def withdrawn(self, record: Record, out: BatchWrites) -> None:
        out.append("activity", self._row(record, "withdrawal"))

    @handles(TransferDebited)
    def transfer_out(self, record: Record, out: BatchWrites) -> None:
        out.append("activity", self._row(record, "transfer_out"))

    @handles(TransferCredited)
    def transfer_in(self, record: Record, out: BatchWrites) -> None:
        out.append("activity", self._row(record, "transfer_in"))

    @handles(TransferRefunded)
    def transfer_refund(self, record: Record, out: BatchWrites) -> None:
        out.append("activity", self._row(record, "transfer_refund"))
