"""The Ray Serve deployment of the GraphQL ingress, and :func:`run` to deploy it locally.

The replica builds the ASGI app at init (``__serve_build_asgi_app__``), so the Starlette
lifespan, which opens the command bus and the read pool, runs inside the replica's loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ray import serve

from eventray.platform.errors import ServiceUnavailable
from eventray.platform.settings import Settings
from eventray.serving.settings import ServingSettings

log = logging.getLogger("eventray.serving")


@serve.deployment(name="GraphQLIngress")
@serve.ingress()
class GraphQLIngress:
    """Thin shell: holds the settings and the model handles, builds the app."""

    def __init__(self, settings: Settings, serving: ServingSettings, **models: Any) -> None:
        from eventray.platform.observability import logs

        logs.configure(json_lines=settings.log_json)
        self._settings = settings
        self._serving = serving
        self._models = models

    def __serve_build_asgi_app__(self):  # noqa: ANN204 - Serve's hook
        from eventray.serving.app import build_app

        return build_app(self._settings, self._serving, behind_serve_proxy=True, models=self._models,
                         app_name=self._serving.app_name)


def run(settings: Settings, serving: ServingSettings, *, wait_s: float = 120.0, models: bool | None = None) -> str:
    """Deploy (or update) the app on the Ray cluster of ``settings``; returns the GraphQL URL.

    Serve's HTTP proxy listens on ``serving.http_host:http_port``. Waits until ``/healthz``
    answers through the proxy. ``models``: compose the model deployments into the app
    (``bind_models``) for the ML fields; default: when ``settings.models_dir`` has trained models.
    """
    import httpx

    from eventray.platform import composition

    composition.connect_ray(settings)
    serve.start(http_options={"host": serving.http_host, "port": serving.http_port})
    scaling = serving.autoscaling
    app = GraphQLIngress.options(
        **({"autoscaling_config": scaling} if scaling else {"num_replicas": serving.replicas}),
        max_ongoing_requests=serving.max_ongoing_requests,
        ray_actor_options={"num_cpus": 0},
    ).bind(settings, serving, **_model_apps(settings, models))
    serve.run(app, name=serving.app_name, route_prefix=serving.route_prefix, blocking=False)
    base = f"http://{serving.http_host}:{serving.http_port}{serving.route_prefix.rstrip('/')}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                return f"{base}/graphql"
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"the GraphQL app did not become healthy at {base}/healthz in {wait_s:.0f}s")
        time.sleep(0.5)


def _model_apps(settings: Settings, models: bool | None) -> dict[str, Any]:
    from eventray.platform.ml.registry import Registry
    from eventray.serving.models import bind_models

    if models is None:
        models = bool(Registry(settings.models_dir).names())
    return bind_models(settings) if models else {}


def shutdown(serving: ServingSettings) -> None:
    """Remove the app from Serve (the shards and the stack stay up)."""
    serve.delete(serving.app_name)
