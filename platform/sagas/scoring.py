"""The fraud step's scorer: an injectable interface and its implementations.

A scorer takes a batch of movements and returns one score each; the saga refuses a movement
scoring above ``SagaSettings.fraud_threshold``. The coordinator sends every movement waiting
for a score in one call per transaction, never one call per transfer.

* :class:`AnomalyModelScorer` - the anomaly model of the ML application (IsolationForest over
  :class:`~eventray.platform.ml.features.MovementFeatures`), through
  :class:`~eventray.serving.models.client.MLClient`. Scores > 0 are outliers at the trained
  contamination.
* :class:`AmountRuleScorer` - a plain amount limit (``amount / limit``), for deployments
  without the ML application.
"""

from __future__ import annotations

from typing import Any, Protocol

from eventray.platform.errors import ServiceUnavailable

__all__ = ["AmountRuleScorer", "AnomalyModelScorer", "FraudScorer"]


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
