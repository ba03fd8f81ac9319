"""The Models screen's data: the registry's versions and defaults, each deployment's traffic and
latency, and promote.

Traffic and latency come from :meth:`~eventray.serving.models.client.MLClient.stats`, which
answers for one replica of each model (whichever the router picks), as ``/metrics`` shows
them; replica counts from Serve's status of this application. Promote writes the registry's
``defaults.json`` (:func:`eventray.platform.ml.registry.promote`); every client re-reads it on
its next call, so the next request routes to the new default.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from typing import Any

log = logging.getLogger("eventray.console")

NOT_BOUND = "no model deployments are bound to this app"


def _latency(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50_ms": None, "p99_ms": None}
    if len(samples) == 1:
        return {"p50_ms": round(samples[0], 3), "p99_ms": round(samples[0], 3)}
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49], 3), "p99_ms": round(cuts[98], 3)}


async def overview(ml: Any, app_name: str, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """``{"bound", "message", "models": [{name, family, default, versions, deployed, replicas,
    requests, batches, p50_ms, p99_ms, stats_error}]}``; never raises for one model's stats."""
    if ml is None:
        return {"bound": False, "message": NOT_BOUND, "models": []}
    from eventray.serving.console.live import running_replicas
    from eventray.serving.models.deployment import deployment_name
    from eventray.serving.models.metrics import replica_counts

    deployed = ml.deployed()

    async def stats(model: str) -> dict[str, Any] | BaseException:
        try:
            return dict(await asyncio.wait_for(ml.stats(model), timeout_s))
        except Exception as e:  # noqa: BLE001 - shown per model; the screen renders the rest
            log.warning("console: no stats from model %s: %s: %s", model, type(e).__name__, e)
            return e

    async def replicas() -> dict[str, int]:
        try:
            counts = await asyncio.wait_for(asyncio.to_thread(replica_counts, app_name), timeout_s)
        except Exception as e:  # noqa: BLE001 - as above
            log.warning("console: no Serve status for %s: %s: %s", app_name, type(e).__name__, e)
            return {}
        return running_replicas(counts.items())

    gathered, running = await asyncio.gather(asyncio.gather(*(stats(m) for m in deployed)), replicas())
    by_model = dict(zip(deployed, gathered))
    out = []
    for entry in await asyncio.to_thread(ml.models):
        name = entry["name"]
        s = by_model.get(name)
        row: dict[str, Any] = {**entry, "deployed": name in by_model, "replicas": running.get(deployment_name(name)),
                               "requests": None, "batches": None, "p50_ms": None, "p99_ms": None, "stats_error": None}
        if isinstance(s, BaseException):
            row["stats_error"] = f"{type(s).__name__}: {s}"
        elif s is not None:
            sizes = {int(k): int(v) for k, v in (s.get("batch_sizes") or {}).items()}
            row.update(requests=sum(k * v for k, v in sizes.items()), batches=sum(sizes.values()),
                       **_latency([float(x) for x in s.get("latency_ms") or []]))
        out.append(row)
    return {"bound": True, "message": None if out else "the registry lists no trained models", "models": out}


def promote(ml: Any, name: str, version: str) -> str:
    """Make ``version`` the default of ``name`` (blocking: writes the registry); returns it."""
    from eventray.platform.ml.registry import promote as write_default

    if ml is None:
        raise LookupError(NOT_BOUND)
    if not version:
        raise ValueError("choose a version to promote")
    write_default(ml.registry.model_dir, name, version)  # UnknownModel / UnknownModelVersion when absent
    return version
