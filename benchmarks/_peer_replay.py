"""The replay peer: the `eventsourcing` library rebuilding an account-activity view.

Its own machinery end to end: an :class:`~eventsourcing.application.Application` stores the
events in PostgreSQL; a :class:`~eventsourcing.projection.ProjectionRunner` subscribes to the
application's recorder and drives a :class:`~eventsourcing.projection.Projection` whose view
is a :class:`~eventsourcing.postgres.PostgresTrackingRecorder` subclass writing one activity
row per movement together with its tracking record, in one transaction per event (the
library's exactly-once pattern).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from eventsourcing.application import Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from psycopg.sql import SQL, Identifier

from benchmarks._peer_eventsourcing import drop_schema, peer_env


class LedgerAccount(Aggregate):
    @event("Opened")
    def __init__(self, owner_id: str, currency: str) -> None:
        self.owner_id = owner_id
        self.currency = currency
        self.balance = 0

    @event("Deposited")
    def _deposited(self, amount: int, balance_after: int) -> None:
        self.balance = balance_after

    def deposit(self, amount: int) -> None:
        self._deposited(amount, self.balance + amount)


class Ledger(Application[uuid.UUID]):
    pass


class ActivityView(PostgresTrackingRecorder):
    """activity(account_id, seq, kind, amount, balance_after, at) + tracking, same transaction."""

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        table = SQL("{0}.{1}").format(Identifier(self.datastore.schema), Identifier("peer_activity"))
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {0} (account_id text NOT NULL, seq bigint NOT NULL, kind text NOT NULL, "
            "amount bigint NOT NULL, balance_after bigint NOT NULL, at timestamptz NOT NULL, "
            "PRIMARY KEY (account_id, seq))").format(table))
        self._insert = SQL("INSERT INTO {0} VALUES (%s, %s, %s, %s, %s, %s)").format(table)

    def record(self, row: tuple[Any, ...], tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._insert, row, prepare=True)
            self._insert_tracking(curs, tracking)


class ActivityProjection(Projection[ActivityView]):
    name = "peeractivity"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, domain_event: LedgerAccount.Deposited, tracking: Tracking) -> None:
        self.view.record((str(domain_event.originator_id), domain_event.originator_version, "deposit",
                          domain_event.amount, domain_event.balance_after, domain_event.timestamp), tracking)


def seed(dsn: str, schema: str, events: int, accounts: int) -> int:
    """Store ``events`` events (opens + deposits) in the peer's PostgreSQL event store."""
    import psycopg

    drop_schema(dsn, schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    app = Ledger(env=peer_env(dsn, schema, 4))
    per_account = max(1, events // accounts)
    stored = 0
    while stored < events:
        acc = LedgerAccount("owner", "EUR")
        for _ in range(min(per_account, events - stored) - 1):
            acc.deposit(7)
        stored += len(acc.pending_events)
        app.save(acc)
    app.close()
    return stored


def replay(dsn: str, schema: str, timeout_s: float = 3600.0) -> dict[str, Any]:
    """Rebuild the view from the start with the library's ProjectionRunner; events/s."""
    import psycopg

    env = {**peer_env(dsn, schema, 4), "PEERACTIVITY_POSTGRES_SCHEMA": schema}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SQL("DROP TABLE IF EXISTS {0}.peer_activity, {0}.peeractivity_tracking").format(Identifier(schema)))
        head = conn.execute(SQL("SELECT max(notification_id), count(*) FROM {0}.ledger_events").format(
            Identifier(schema))).fetchone()
    last_id, total = int(head[0]), int(head[1])
    t0 = time.perf_counter()
    with ProjectionRunner(application_class=Ledger, projection_class=ActivityProjection, view_class=ActivityView,
                          env=env) as runner:
        runner.wait(last_id, timeout=timeout_s)
        elapsed = time.perf_counter() - t0
    return {"events": total, "seconds": elapsed, "events_per_s": total / elapsed}


__all__ = ["dt", "drop_schema", "replay", "seed"]
