"""alerts: money movements the anomaly model or the z-score baseline flags, per account.

Each batch is scored once, in :meth:`Alerts.enrich`: the accounts' feature state is read
from this read model (``feature_state``, as of the batch's stored offset), the features of
every movement are computed in log order, and the anomaly deployment scores them in
requests of up to 256 rows. The handlers then append the flagged movements to ``alerts``
and write each account's new feature state, in the same transaction as the offsets.

Replaying a batch (after a crash before its commit) starts from the same stored state and
the same records, so it computes the same features; each row records the model version
that scored it. A rebuild (``eventray replay alerts``) scores with the model version that
is the default at the time. Refunds of failed transfers are compensations, not customer
movements: they are neither scored nor folded into the feature state.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from eventray.aggregates.account import MoneyDeposited, MoneyWithdrawn, TransferCredited, TransferDebited
from eventray.platform.errors import ConfigurationError
from eventray.platform.ml.features import AccountFeatureState, Movement, MovementFeatures
from eventray.platform.projections import BatchWrites, Projection, Record, Table, handles

__all__ = ["Alerts", "Scored"]

_UTC = dt.timezone.utc
_KIND: dict[type, str] = {MoneyDeposited: "deposit", MoneyWithdrawn: "withdrawal", TransferCredited: "transfer_in",
         TransferDebited: "transfer_out"}
_STATE_COLUMNS = ("last_at", "recent", "n", "mean", "m2")


class Scorer(Protocol):
    """What :meth:`Alerts.enrich` needs: ``eventray.serving.models.AlertScorer``."""

    async def score(self, movements: list[Movement], *, features: MovementFeatures | None = None) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class Scored:
    """The enrichment of one movement: its alert, and its account's state when it is the last
    movement of that account in the batch (``stored``: a row for it exists already)."""

    alert: Any  # eventray.serving.models.Alert
    state: AccountFeatureState | None
    stored: bool


class Alerts(Projection):
    """Append-only alerts plus one feature-state row per account that has moved money."""

    name = "alerts"
    models = ("anomaly",)
    version = 1
    tables = (
        Table("alerts", ("account_id", "at", "kind", "amount", "score", "zscore", "reason", "model_version",
                         "log_partition", "log_offset")),
        Table("feature_state", ("account_id", *_STATE_COLUMNS), key=("account_id",)),
    )
    schema_sql = """
        CREATE TABLE {schema}.alerts (
            account_id    text             NOT NULL,
            at            timestamptz      NOT NULL,
            kind          text             NOT NULL,
            amount        bigint           NOT NULL,
            score         double precision NOT NULL,
            zscore        double precision NOT NULL,
            reason        text             NOT NULL,
            model_version text             NOT NULL,
            log_partition integer          NOT NULL,
            log_offset    bigint           NOT NULL,
            PRIMARY KEY (log_partition, log_offset)
        );
        CREATE INDEX alerts_by_account ON {schema}.alerts (account_id, at DESC, log_offset DESC);
        CREATE TABLE {schema}.feature_state (
            account_id text               PRIMARY KEY,
            last_at    double precision,
            recent     double precision[] NOT NULL,
            n          bigint             NOT NULL,
            mean       double precision   NOT NULL,
            m2         double precision   NOT NULL
        );
    """

    def __init__(self, *, scorer: Scorer | None = None) -> None:
        super().__init__()
        self._scorer = scorer

    @classmethod
    def build(cls, settings: Any) -> Alerts:
        """Scoring through the anomaly deployment of ``settings.ml_app_name`` (Serve handles)."""
        from eventray.serving.models import AlertScorer, MLClient

        return cls(scorer=AlertScorer(client=MLClient.connect(settings, models=("anomaly",))))

    async def enrich(self, batch: Any) -> list[Scored]:
        """Score the batch's movements in one pass (see the module docstring)."""
        if self._scorer is None:
            raise ConfigurationError("the alerts projection has no scorer; build it with Alerts.build(settings)")
        records: list[Record] = batch.records
        accounts = [r.envelope.aggregate_id for r in records]
        stored = batch.rows("feature_state", accounts)
        features = MovementFeatures()
        for account, row in stored.items():
            features.load(account, AccountFeatureState(**{c: row[c] for c in _STATE_COLUMNS}))
        movements = [Movement(r.envelope.aggregate_id, r.envelope.timestamp / 1000.0, r.event.amount,
                              _KIND[type(r.event)]) for r in records]
        alerts = await self._scorer.score(movements, features=features)
        last = {account: i for i, account in enumerate(accounts)}
        return [Scored(alert, features.state(account) if last[account] == i else None, account in stored)
                for i, (account, alert) in enumerate(zip(accounts, alerts))]

    @handles(MoneyDeposited, MoneyWithdrawn, TransferCredited, TransferDebited)
    def moved(self, record: Record, out: BatchWrites) -> None:
        scored: Scored = out.enriched(record)
        alert = scored.alert
        account = record.envelope.aggregate_id
        if alert.flagged:
            out.append("alerts", (account, dt.datetime.fromtimestamp(alert.at, tz=_UTC), _KIND[type(record.event)],
                                  alert.amount, alert.score, alert.zscore, alert.reason, alert.model_version,
                                  record.partition, record.offset))
        state = scored.state
        if state is None:
            return
        columns = {"last_at": state.last_at, "recent": list(state.recent), "n": state.n, "mean": state.mean,
                   "m2": state.m2}
        if scored.stored:
            out.update("feature_state", account, **columns)
        else:
            out.create("feature_state", {"account_id": account, **columns})
