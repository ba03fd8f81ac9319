"""Calling the model deployments: default-version routing and typed errors on the caller's side.

:class:`MLClient` holds one Serve handle per model. Each call resolves the model's default
version from the registry (re-read when ``defaults.json`` changes, so a promotion takes effect
on the next call) and routes with ``multiplexed_model_id`` to replicas that hold that version.
Errors raised in a replica arrive wrapped by Ray; the client re-raises the eventray error inside.
"""

from __future__ import annotations

from typing import Any

from eventray.platform.errors import EventrayError, ServiceUnavailable
from eventray.platform.ml.registry import Registry
from eventray.platform.settings import Settings


class MLClient:
    """Async access to the model deployments. Build it inside the caller's event loop process."""

    def __init__(self, *, handles: dict[str, Any], registry: Registry) -> None:
        self._handles = handles
        self._registry = registry
        self._routed: dict[tuple[str, str], Any] = {}

    @classmethod
    def connect(cls, settings: Settings, *, app_name: str | None = None,
                models: tuple[str, ...] | None = None) -> MLClient:
        """Handles to the deployments of the running ML application (see ``deployment.deploy``)."""
        from ray import serve

        from eventray.serving.models.deployment import deployment_name

        registry = Registry(settings.models_dir)
        app = app_name or settings.ml_app_name
        names = models or tuple(registry.names())
        return cls(handles={n: serve.get_deployment_handle(deployment_name(n), app_name=app) for n in names},
                   registry=registry)

    @property
    def registry(self) -> Registry:
        return self._registry

    def deployed(self) -> list[str]:
        """The models this client has handles to."""
        return sorted(self._handles)

    def _handle(self, model: str, version: str | None) -> tuple[Any, str]:
        record = self._registry.record(model, version)  # UnknownModel / UnknownModelVersion
        key = (model, record.version)
        handle = self._routed.get(key)
        if handle is None:
            base = self._handles.get(model)
            if base is None:
                raise ServiceUnavailable(f"model {model!r} is in the registry but not deployed", model=model)
            handle = self._routed[key] = base.options(multiplexed_model_id=record.version)
        return handle, record.version

    async def predict(self, model: str, payload: Any, *, version: str | None = None) -> dict[str, Any]:
        """One request to ``model`` (its default version unless ``version``); the family's result dict."""
        from ray.exceptions import RayTaskError

        handle, _ = self._handle(model, version)
        try:
            return await handle.remote(payload)
        except RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, EventrayError):
                raise cause from None
            raise
        except EventrayError:
            raise

    async def stats(self, model: str) -> dict[str, Any]:
        """Batch sizes and latencies of one replica of ``model`` (whichever the router picks)."""
        return await self._handles[model].stats.remote()

    def models(self) -> list[dict[str, Any]]:
        """Registry view for the ``models`` GraphQL field: name, versions, default, metrics."""
        defaults = self._registry.defaults()
        out: dict[str, dict[str, Any]] = {}
        for r in self._registry.records():
            entry = out.setdefault(r.name, {"name": r.name, "family": r.family,
                                            "default": defaults.get(r.name) or self._registry.default_version(r.name),
                                            "versions": []})
            entry["versions"].append({"version": r.version, "sha256": r.sha256, "opset": r.opset,
                                      "metrics": r.metrics, "trainingDataSha256": r.training_data_sha256})
        return list(out.values())
