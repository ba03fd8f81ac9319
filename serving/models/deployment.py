"""The Serve deployment of a model family: one ONNX Runtime session per loaded version.

Thin shell around :mod:`eventray.platform.ml.families`: it validates each request on arrival
(a bad request fails alone with its typed error), batches valid ones with ``@serve.batch``,
and runs each batch in one session call on a worker thread so the next batch can gather
meanwhile. Versions are loaded on demand through ``@serve.multiplexed``; the caller picks one
with ``handle.options(multiplexed_model_id=version)``, else the registry's default applies.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from eventray.platform.errors import ConfigurationError, ServiceUnavailable
from eventray.platform.ml.families import Family, Limits
from eventray.platform.ml.served import load_registered
from eventray.platform.ml.registry import Registry
from eventray.platform.settings import Settings

log = logging.getLogger(__name__)


def _assigned_cpus() -> float:
    import ray

    try:
        return float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))
    except Exception:  # noqa: BLE001 - outside a Ray worker (tests): one thread
        log.debug("no Ray runtime context; using one intra-op thread")
        return 1.0


class ModelDeployment:
    """Serves every version of one registry model. Call with the request payload."""

    def __init__(self, model: str, model_dir: str, *, limits: Limits, max_batch_size: int,
                 batch_wait_timeout_s: float) -> None:
        self._model = model
        self._registry = Registry(model_dir)
        self._registry.versions(model)  # fail the replica early when the model was never trained
        self._limits = limits
        self._threads = max(1, round(_assigned_cpus()))  # a fraction of a CPU -> 1 thread
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"onnx-{model}")
        self._batch_sizes: Counter[int] = Counter()
        self._latency_ms: list[float] = []
        self._batched.set_max_batch_size(max_batch_size)  # type: ignore[attr-defined]  # added by @serve.batch
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)  # type: ignore[attr-defined]

    @serve.multiplexed(max_num_models_per_replica=3)
    async def _family(self, version: str) -> Family:
        record = self._registry.record(self._model, version)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: load_registered(self._registry, record, threads=self._threads, limits=self._limits))

    async def __call__(self, payload: Any) -> dict[str, Any]:
        version = serve.get_multiplexed_model_id() or self._registry.default_version(self._model)
        self._registry.record(self._model, version)  # UnknownModelVersion before any loading
        family = await self._family(version)
        item = family.validate(payload)
        return await self._batched((version, family, item))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.003)
    async def _batched(self, entries: list[tuple[str, Family, Any]]) -> list[dict[str, Any]]:
        self._batch_sizes[len(entries)] += 1
        results: list[dict[str, Any] | None] = [None] * len(entries)
        by_version: dict[str, list[int]] = {}
        for i, (version, _, _) in enumerate(entries):
            by_version.setdefault(version, []).append(i)
        loop = asyncio.get_running_loop()
        for version, idx in by_version.items():
            family = entries[idx[0]][1]
            items = [entries[i][2] for i in idx]
            start = time.perf_counter()
            outputs = await loop.run_in_executor(self._executor, family.run, items)
            self._latency_ms.append((time.perf_counter() - start) * 1e3)
            for i, out in zip(idx, outputs):
                results[i] = {**out, "version": version, "batch_requests": len(entries)}
        if len(self._latency_ms) > 4096:
            del self._latency_ms[:2048]
        return results  # type: ignore[return-value]

    async def stats(self) -> dict[str, Any]:
        """This replica's batch-size histogram and recent ONNX call latencies (ms)."""
        return {"batch_sizes": dict(self._batch_sizes), "latency_ms": list(self._latency_ms[-1024:]),
                "threads": self._threads}


class ModelIndex:
    """Ingress of the standalone ML application: lists the registry. The GraphQL ingress replaces it
    when the models join the main application; it takes the same bound model handles."""

    def __init__(self, model_dir: str, **models: Any) -> None:
        self._registry = Registry(model_dir)
        self._models = models

    async def __call__(self, request: Any = None) -> dict[str, Any]:
        defaults = self._registry.defaults()
        return {"models": [{"name": r.name, "version": r.version, "default": defaults.get(r.name) == r.version,
                            "sha256": r.sha256} for r in self._registry.records()]}


def deployment_name(model: str) -> str:
    return f"model-{model}"


def autoscaling_config(settings: Settings) -> dict[str, Any]:
    """Serve autoscaling from settings (production defaults; CI sets the EVENTRAY_ML_* overrides)."""
    from eventray.serving.autoscaling import autoscaling_config as checked

    return checked(
        prefix="EVENTRAY_ML", min_replicas=settings.ml_min_replicas, max_replicas=settings.ml_max_replicas,
        target_ongoing_requests=settings.ml_target_ongoing_requests,
        upscale_delay_s=settings.ml_upscale_delay_s, downscale_delay_s=settings.ml_downscale_delay_s,
        metrics_interval_s=settings.ml_metrics_interval_s, look_back_period_s=settings.ml_look_back_period_s)


def bind_model(settings: Settings, model: str) -> Any:
    """The bound deployment (``Application``) of ``model``, configured from ``settings``."""
    if settings.ml_max_ongoing_requests < settings.ml_max_batch_size:
        raise ConfigurationError(
            f"EVENTRAY_ML_MAX_ONGOING_REQUESTS ({settings.ml_max_ongoing_requests}) must be at least "
            f"EVENTRAY_ML_MAX_BATCH_SIZE ({settings.ml_max_batch_size}), or batches can never fill")
    limits = Limits(max_rows=settings.ml_max_rows_per_request, max_text_chars=settings.ml_max_text_chars)
    return serve.deployment(ModelDeployment).options(  # type: ignore[attr-defined]  # a Deployment at run time
        name=deployment_name(model),
        ray_actor_options={"num_cpus": settings.ml_replica_num_cpus},
        max_ongoing_requests=settings.ml_max_ongoing_requests,
        autoscaling_config=autoscaling_config(settings),
        health_check_period_s=5,
    ).bind(model, str(settings.models_dir), limits=limits, max_batch_size=settings.ml_max_batch_size,
           batch_wait_timeout_s=settings.ml_batch_wait_timeout_s)


def bind_models(settings: Settings, models: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Bound deployments of ``models`` (default: every model in the registry), keyed by model name.

    Pass them to an ingress's ``.bind(**bind_models(settings))``; inside it they are handles.
    """
    names = models or tuple(Registry(settings.models_dir).names())
    if not names:
        raise ConfigurationError(f"no trained model in {settings.models_dir}; run `eventray models train`")
    return {name: bind_model(settings, name) for name in names}


def build_app(settings: Settings, models: tuple[str, ...] | None = None) -> Any:
    """The standalone ML application: :class:`ModelIndex` ingress plus one deployment per model."""
    index = serve.deployment(ModelIndex).options(  # type: ignore[attr-defined]  # a Deployment at run time
        name="model-index", ray_actor_options={"num_cpus": 0})
    return index.bind(str(settings.models_dir), **bind_models(settings, models))


def deploy(settings: Settings, models: tuple[str, ...] | None = None, *, name: str | None = None,
           timeout_s: float | None = None) -> str:
    """Run the standalone ML application on the connected Ray cluster; returns its app name.

    It has no HTTP route (callers use handles), so it coexists with the GraphQL application.
    ``timeout_s``: give up after that long with a :class:`ServiceUnavailable` that quotes Serve's
    own account of the deployments that are not up (say, replicas waiting for CPUs); without
    it, wait as long as Serve takes.
    """
    app_name = name or settings.ml_app_name
    target = build_app(settings, models)
    if timeout_s is None:
        serve.run(target, name=app_name, route_prefix=None)
        return app_name
    wait_for(lambda: serve.run(target, name=app_name, route_prefix=None), app_name, timeout_s)
    return app_name


def wait_for(step: Callable[[], Any], app_name: str, timeout_s: float) -> Any:
    """Run ``step`` (a Serve deploy of ``app_name`` that blocks until it runs) for at most ``timeout_s``.

    On a timeout the step is left to finish on its own (Serve keeps the desired state) and a
    :class:`ServiceUnavailable` says what Serve reports about the app's deployments.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = step()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, name=f"deploy-{app_name}", daemon=True).start()
    if not done.wait(timeout_s):
        raise ServiceUnavailable(f"the Serve application {app_name!r} is not running after {timeout_s:.0f}s: "
                                 f"{not_running_reason(app_name)}")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def not_running_reason(app_name: str) -> str:
    """Serve's own messages about the deployments of ``app_name`` that are not healthy, in one line."""
    try:
        app = serve.status().applications.get(app_name)
    except Exception as e:  # noqa: BLE001 - the controller itself is unreachable: say so
        return f"Serve's status is unavailable ({type(e).__name__}: {e})"
    if app is None:
        return "Serve does not know the application (yet)"
    parts = [f"{name}: {d.status} {d.message}".strip() for name, d in app.deployments.items()
             if str(d.status) not in ("HEALTHY", "DeploymentStatus.HEALTHY")]
    return "; ".join(parts) or f"{app.status} {app.message}".strip()


def running_models(settings: Settings, name: str | None = None) -> list[str]:
    """The models whose deployments run healthy in the ML application (``name``, default
    ``settings.ml_app_name``); empty when it is not deployed or not running."""
    try:
        app = serve.status().applications.get(name or settings.ml_app_name)
    except Exception:  # noqa: BLE001 - Serve not started: nothing runs
        log.debug("no Serve status: no model application runs")
        return []
    if app is None or str(app.status) not in ("RUNNING", "ApplicationStatus.RUNNING"):
        return []
    prefix = deployment_name("")
    return sorted(d.removeprefix(prefix) for d, status in app.deployments.items()
                  if d.startswith(prefix) and str(status.status) in ("HEALTHY", "DeploymentStatus.HEALTHY"))
