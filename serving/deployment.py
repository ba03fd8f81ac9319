"""The Ray Serve deployment of the GraphQL ingress, and :func:`run` to deploy it locally.

The replica builds the ASGI app at init (``__serve_build_asgi_app__``), so the Starlette
lifespan, which opens the command bus and the read pool, runs inside the replica's loop.
"""

from __future__ import annotations

import logging
import time

from ray import serve

from eventray.platform.errors import ServiceUnavailable
from eventray.platform.settings import Settings
from eventray.serving.settings import ServingSettings

log = logging.getLogger("eventray.serving")


@serve.deployment(name="GraphQLIngress")
@serve.ingress()
class GraphQLIngress:
    """Thin shell: holds the settings, builds the app."""

    def __init__(self, settings: Settings, serving: ServingSettings) -> None:
        self._settings = settings
        self._serving = serving

    def __serve_build_asgi_app__(self):  # noqa: ANN204 - Serve's hook
        from eventray.serving.app import build_app

        return build_app(self._settings, self._serving, behind_serve_proxy=True)


def run(settings: Settings, serving: ServingSettings, *, wait_s: float = 120.0) -> str:
    """Deploy (or update) the app on the Ray cluster of ``settings``; returns the GraphQL URL.

    Serve's HTTP proxy listens on ``serving.http_host:http_port``. Waits until ``/healthz``
    answers through the proxy.
    """
    import httpx

    from eventray.platform import composition

    composition.connect_ray(settings)
    serve.start(http_options={"host": serving.http_host, "port": serving.http_port})
    app = GraphQLIngress.options(
        num_replicas=serving.replicas,
        max_ongoing_requests=serving.max_ongoing_requests,
        ray_actor_options={"num_cpus": 0},
    ).bind(settings, serving)
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


def shutdown(serving: ServingSettings) -> None:
    """Remove the app from Serve (the shards and the stack stay up)."""
    serve.delete(serving.app_name)
