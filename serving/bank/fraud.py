"""The bank's fraud step: the scorer interface, its implementations, and the TransferMoney wiring.

A scorer takes a batch of movements and returns one score each; the saga refuses a movement
scoring above ``TransferPolicy.fraud_threshold``. The coordinator sends every movement waiting
for a score in one call per transaction, never one call per transfer.

:func:`transfer_policy` reads the saga's policy from ``EVENTRAY_SAGA_*`` variables
(:class:`TransferSettings`); :func:`fraud_services` builds the ``fraud`` service the policy's
``scorer`` names. The app declares both (``eventray.Saga(TransferMoney, policy=..., services=...)``).

* :class:`AnomalyModelScorer` - the anomaly model of the ML application (IsolationForest over
  :class:`~eventray.platform.ml.features.MovementFeatures`), through
  :class:`~eventray.serving.models.client.MLClient`. Scores > 0 are outliers at the trained
  contamination.
* :class:`AmountRuleScorer` - a plain amount limit (``amount / limit``), for deployments
  without the ML application.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventray.platform.errors import ConfigurationError, ServiceUnavailable
from eventray.sagas.transfer_money import TransferPolicy

__all__ = ["SCORER_BOUNDARY", "AmountRuleScorer", "AnomalyModelScorer", "FraudScorer", "TransferSettings", "fraud_services",
           "transfer_policy"]


class TransferSettings(BaseSettings):
    """TransferMoney's policy, from ``EVENTRAY_SAGA_<FIELD>`` variables."""

    model_config = SettingsConfigDict(env_prefix="EVENTRAY_SAGA_", extra="ignore", frozen=True)

    fraud_threshold: float | None = Field(
        default=None, description="score above which a transfer is refused; unset: the scorer's own boundary "
        "(anomaly: 0.0, where the IsolationForest calls a movement an outlier; rule: 1.0, rule_limit itself)")
    scorer: str = Field(default="anomaly", description="'anomaly' (the ML deployment) or 'rule' (amount limit)")
    rule_limit: int = Field(default=10**9, ge=1, description="the rule scorer's amount (minor units) scoring 1.0")
    step_timeout_ms: int = Field(default=5_000, ge=1)
    overall_timeout_ms: int = Field(default=60_000, ge=1)
    max_attempts: int = Field(default=8, ge=1)
    compensation_max_attempts: int = Field(default=40, ge=1)
    backoff_base_ms: int = Field(default=50, ge=0)
    backoff_max_ms: int = Field(default=2_000, ge=0)


#: the score at which each scorer itself calls a movement strange
SCORER_BOUNDARY = {"anomaly": 0.0, "rule": 1.0}


def transfer_policy(**overrides: Any) -> TransferPolicy:
    """TransferMoney's policy from the environment (:class:`TransferSettings`), with ``overrides``;
    an unset ``fraud_threshold`` is the scorer's boundary (:data:`SCORER_BOUNDARY`)."""
    fields = {**TransferSettings().model_dump(), **overrides}
    if fields["fraud_threshold"] is None:
        fields["fraud_threshold"] = SCORER_BOUNDARY.get(fields["scorer"], 0.0)
    return TransferPolicy(**fields)


def fraud_services(settings: Any, policy: TransferPolicy) -> dict[str, Callable[..., Any]]:
    """``{"fraud": scorer.score}`` for the scorer ``policy.scorer`` names."""
    if policy.scorer == "rule":
        return {"fraud": AmountRuleScorer(limit=policy.rule_limit).score}
    if policy.scorer == "anomaly":
        from eventray.serving.models.client import MLClient

        try:
            client = MLClient.connect(settings, models=("anomaly",))
        except Exception as e:  # no Serve, or no model deployment: say which setting changes it
            raise ConfigurationError(
                f"TransferMoney scores transfers with the 'anomaly' model, but it is not served "
                f"({type(e).__name__}: {e}); train the models (eventray models train) and "
                "deploy their Serve application (eventray models deploy), or set EVENTRAY_SAGA_SCORER=rule "
                "(an amount limit)") from e
        return {"fraud": AnomalyModelScorer(client=client).score}
    raise ConfigurationError(f"EVENTRAY_SAGA_SCORER must be 'anomaly' or 'rule', got {policy.scorer!r}")


class FraudScorer(Protocol):
    """Scores money movements; higher is stranger."""

    async def score(self, movements: list[Any]) -> list[float]:
        """One score per movement (``MovementToScore``), in order.

        Raises:
            ServiceUnavailable: the scorer cannot answer now (the saga retries, then compensates).
        """
        ...


class AmountRuleScorer:
    """``amount / limit``: a transfer of ``limit`` minor units or more scores 1.0 or above."""

    def __init__(self, *, limit: int) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self._limit = limit

    async def score(self, movements: list[Any]) -> list[float]:
        return [m.amount / self._limit for m in movements]


class AnomalyModelScorer:
    """The ``anomaly`` model deployment, fed the same features as training and the alerts projection.

    Args:
        client: an :class:`~eventray.serving.models.client.MLClient` (or anything with its
            ``async predict(model, rows)``).
        model: the registry model name.
        chunk: rows per request.
    """

    def __init__(self, *, client: Any, model: str = "anomaly", chunk: int = 256) -> None:
        from eventray.platform.ml.features import MovementFeatures

        self._client = client
        self._model = model
        self._chunk = chunk
        self._features = MovementFeatures()

    async def score(self, movements: list[Any]) -> list[float]:
        import asyncio

        import numpy as np

        from eventray.platform.ml.features import Movement

        if not movements:
            return []
        rows, _ = self._features.observe_all([
            Movement(account_id=m.from_account, at=m.at_ms / 1000.0, amount=m.amount, kind="withdrawal")
            for m in movements
        ])
        chunks = [rows[i:i + self._chunk] for i in range(0, len(rows), self._chunk)]
        try:
            results = await asyncio.gather(*(self._client.predict(self._model, c) for c in chunks))
        except Exception as e:  # the deployment is down or overloaded: the saga retries
            raise ServiceUnavailable(f"anomaly model unavailable: {type(e).__name__}: {e}") from e
        return [float(x) for x in np.concatenate([np.asarray(r["score"]) for r in results]).tolist()]
