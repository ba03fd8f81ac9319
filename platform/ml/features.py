"""Features of money movements for the anomaly model, and the per-account z-score baseline.

One class computes them for training and for the alerts projection, so the two never drift.
It is pure: no I/O, state kept per account, the same movements in the same order give the
same features.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

#: the anomaly model's input columns, in order
FEATURE_NAMES = ("log_amount", "hour", "log_seconds_since_last", "velocity_24h")

_DAY_S = 86_400.0
#: the time since the last movement of an account's first movement
_FIRST_GAP_S = 7 * _DAY_S


@dataclass(frozen=True, slots=True)
class Movement:
    """One money movement of an account: a deposit (``amount`` > 0 credited) or withdrawal."""

    account_id: str
    at: float  #: epoch seconds (UTC)
    amount: int  #: minor units, always positive
    kind: str = "withdrawal"  #: "deposit" or "withdrawal"


@dataclass(slots=True)
class _AccountStats:
    last_at: float | None = None
    recent: deque[float] = field(default_factory=deque)
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def zscore(self, x: float) -> float:
        if self.n < 5:
            return 0.0
        std = math.sqrt(self.m2 / (self.n - 1))
        return (x - self.mean) / max(std, 0.25)

    def add(self, x: float) -> None:
        # Welford's running mean and variance
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)


@dataclass(frozen=True, slots=True)
class AccountFeatureState:
    """An account's feature state, as a read model stores it between batches.

    Attributes:
        last_at: epoch seconds of its latest movement (``None`` before the first).
        recent: epoch seconds of its movements in the 24 hours before ``last_at`` (velocity).
        n, mean, m2: Welford's running count, mean and sum of squared deviations of the log
            amount (the z-score baseline).
    """

    last_at: float | None
    recent: tuple[float, ...]
    n: int
    mean: float
    m2: float


class MovementFeatures:
    """Stateful feature extractor, one state per account.

    For each movement, in log order: ``log1p(amount in major units)``, the hour of day (UTC),
    ``log1p(seconds since the account's previous movement)`` and the number of the account's
    movements in the previous 24 hours (velocity). :meth:`zscore_of` gives the baseline: the
    z-score of the log amount against the account's earlier movements (0 until 5 are seen).
    """

    def __init__(self) -> None:
        self._accounts: dict[str, _AccountStats] = {}

    def load(self, account_id: str, state: AccountFeatureState) -> None:
        """Resume ``account_id`` from a stored state (before observing its next movements)."""
        self._accounts[account_id] = _AccountStats(last_at=state.last_at, recent=deque(state.recent), n=state.n,
                                                   mean=state.mean, m2=state.m2)

    def state(self, account_id: str) -> AccountFeatureState | None:
        """The current state of ``account_id`` (``None`` if never seen nor loaded), to store.

        Exactly the in-memory state (``recent`` is already trimmed to a day by :meth:`observe`),
        so features computed after a store and load equal those computed without one.
        """
        stats = self._accounts.get(account_id)
        if stats is None:
            return None
        return AccountFeatureState(last_at=stats.last_at, recent=tuple(stats.recent), n=stats.n, mean=stats.mean,
                                   m2=stats.m2)

    def observe(self, movement: Movement) -> tuple[np.ndarray, float]:
        """Features and amount z-score of ``movement``, then fold it into the account's state."""
        stats = self._accounts.get(movement.account_id)
        if stats is None:
            stats = self._accounts[movement.account_id] = _AccountStats()
        log_amount = math.log1p(movement.amount / 100.0)
        gap = _FIRST_GAP_S if stats.last_at is None else max(0.0, movement.at - stats.last_at)
        while stats.recent and stats.recent[0] <= movement.at - _DAY_S:
            stats.recent.popleft()
        hour = (movement.at % _DAY_S) / 3600.0
        features = np.array([log_amount, hour, math.log1p(gap), float(len(stats.recent))], dtype=np.float32)
        z = stats.zscore(log_amount)
        stats.add(log_amount)
        stats.last_at = movement.at if stats.last_at is None else max(stats.last_at, movement.at)
        stats.recent.append(movement.at)
        return features, z

    def observe_all(self, movements: list[Movement]) -> tuple[np.ndarray, np.ndarray]:
        """Features (``float32[n, 4]``) and z-scores (``float64[n]``) of ``movements`` in order."""
        rows = np.empty((len(movements), len(FEATURE_NAMES)), dtype=np.float32)
        zs = np.empty(len(movements), dtype=np.float64)
        for i, m in enumerate(movements):
            rows[i], zs[i] = self.observe(m)
        return rows, zs
