"""account_balances: balance, status and version per account; totals per owner and currency.

Money events carry ``balance_after``, so the balance is set, not summed: applying the same
event twice would be harmless here, but the runtime's offsets make sure it never happens.
Owner totals are a view over the owner's accounts (an index on ``owner_id`` keeps it cheap).
"""

from __future__ import annotations

from eventray.aggregates.account import (
    AccountClosed,
    AccountFrozen,
    AccountOpened,
    AccountUnfrozen,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
    TransferRefunded,
)
from eventray.platform.projections import BatchWrites, Projection, Record, Table, handles

__all__ = ["AccountBalances"]


class AccountBalances(Projection):
    """One row per account, as of its latest event."""

    name = "account_balances"
    version = 2
    tables = (
        Table("accounts", ("account_id", "owner_id", "currency", "balance", "status", "version"),
              key=("account_id",)),
    )
    schema_sql = """
        CREATE TABLE {schema}.accounts (
            account_id text   PRIMARY KEY,
            owner_id   text   NOT NULL,
            currency   text   NOT NULL,
            balance    bigint NOT NULL,
            status     text   NOT NULL,
            version    bigint NOT NULL
        );
        CREATE INDEX accounts_by_owner ON {schema}.accounts (owner_id, account_id);
        CREATE VIEW {schema}.owner_totals AS
            SELECT owner_id, currency, sum(balance)::bigint AS balance, count(*) AS accounts
              FROM {schema}.accounts GROUP BY owner_id, currency;
    """

    @handles(AccountOpened)
    def opened(self, record: Record, out: BatchWrites) -> None:
        e: AccountOpened = record.event
        out.create("accounts", {
            "account_id": record.envelope.aggregate_id, "owner_id": e.owner_id, "currency": e.currency,
            "balance": 0, "status": "active", "version": record.envelope.version,
        })

    @handles(MoneyDeposited, MoneyWithdrawn, TransferDebited, TransferCredited, TransferRefunded)
    def balance_changed(self, record: Record, out: BatchWrites) -> None:
        out.update("accounts", record.envelope.aggregate_id, balance=record.event.balance_after,
                   version=record.envelope.version)

    @handles(AccountFrozen)
    def frozen(self, record: Record, out: BatchWrites) -> None:
        out.update("accounts", record.envelope.aggregate_id, status="frozen", version=record.envelope.version)

    @handles(AccountUnfrozen)
    def unfrozen(self, record: Record, out: BatchWrites) -> None:
        out.update("accounts", record.envelope.aggregate_id, status="active", version=record.envelope.version)

    @handles(AccountClosed)
    def closed(self, record: Record, out: BatchWrites) -> None:
        out.update("accounts", record.envelope.aggregate_id, status="closed", version=record.envelope.version)
