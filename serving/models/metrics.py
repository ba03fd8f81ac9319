"""Prometheus text for the model deployments: Serve replica counts and model batch sizes and latencies.

Rendered by the ingress's ``/metrics`` after its own metrics. Replica counts come from
``serve.status()`` (every deployment of the ingress's application, by replica state); batch
sizes and ONNX Runtime latencies from :meth:`MLClient.stats`, which answers for one replica
of each model (the one the router picks), so they are per-replica samples, labelled as such.
A scrape never fails because a deployment is away: what cannot be read is left out and
counted in ``eventray_model_stats_errors``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger("eventray.serving.models")

_QUANTILES = (0.5, 0.95, 0.99)


def replica_counts(app_name: str) -> dict[tuple[str, str], int]:
    """``{(deployment, state): replicas}`` of application ``app_name`` (blocking: a controller call)."""
    from ray import serve

    status = serve.status().applications.get(app_name)
    if status is None:
        return {}
    return {(name, str(state)): int(n) for name, d in status.deployments.items()
            for state, n in d.replica_states.items()}


def render(*, app_name: str, replicas: Mapping[tuple[str, str], int],
           stats: Mapping[str, dict[str, Any] | None]) -> str:
    """The text exposition of ``replicas`` (see :func:`replica_counts`) and per-model ``stats``."""
    out = ["# HELP eventray_serve_replicas Serve replicas of each deployment of this application, by state.",
           "# TYPE eventray_serve_replicas gauge"]
    for (deployment, state), n in sorted(replicas.items()):
        out.append(f'eventray_serve_replicas{{app="{app_name}",deployment="{deployment}",state="{state}"}} {n}')
    out += ["# HELP eventray_model_batches_total Batches one replica of the model ran, by batch size (requests).",
            "# TYPE eventray_model_batches_total counter"]
    for model, s in sorted(stats.items()):
        for size, n in sorted((s or {}).get("batch_sizes", {}).items(), key=lambda kv: int(kv[0])):
            out.append(f'eventray_model_batches_total{{model="{model}",batch_size="{size}"}} {n}')
    out += ["# HELP eventray_model_inference_seconds ONNX Runtime time per batch on one replica (recent batches).",
            "# TYPE eventray_model_inference_seconds summary"]
    errors = 0
    for model, s in sorted(stats.items()):
        if s is None:
            errors += 1
            continue
        latencies = np.asarray(s.get("latency_ms") or [], dtype=np.float64) / 1e3
        if latencies.size:
            for q, v in zip(_QUANTILES, np.quantile(latencies, _QUANTILES)):
                out.append(f'eventray_model_inference_seconds{{model="{model}",quantile="{q}"}} {v:.6f}')
        out.append(f'eventray_model_inference_seconds_sum{{model="{model}"}} {latencies.sum():.6f}')
        out.append(f'eventray_model_inference_seconds_count{{model="{model}"}} {latencies.size}')
    out += ["# HELP eventray_model_stats_errors Models whose replica stats could not be read in this scrape.",
            "# TYPE eventray_model_stats_errors gauge", f"eventray_model_stats_errors {errors}"]
    return "\n".join(out) + "\n"


async def collect(ml: Any, app_name: str, *, timeout_s: float = 2.0) -> str:
    """Read replica counts and every model's stats, and render them (see :func:`render`)."""
    models = ml.deployed()

    async def one(model: str) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(ml.stats(model), timeout_s)
        except Exception as e:  # noqa: BLE001 - a scrape must not fail for one model; counted in the output
            log.warning("no stats from model %s: %s: %s", model, type(e).__name__, e)
            return None

    loop = asyncio.get_running_loop()
    replicas_f = loop.run_in_executor(None, replica_counts, app_name)
    stats = dict(zip(models, await asyncio.gather(*(one(m) for m in models))))
    try:
        replicas = await asyncio.wait_for(replicas_f, timeout_s)
    except Exception as e:  # noqa: BLE001 - as above
        log.warning("no Serve status for %s: %s: %s", app_name, type(e).__name__, e)
        replicas = {}
    return render(app_name=app_name, replicas=replicas, stats=stats)
