"""The Ray Serve deployment of the GraphQL ingress, and :func:`run` to deploy it locally.

The replica builds the ASGI app at init (``__serve_build_asgi_app__``), so the Starlette
lifespan, which opens the command bus and the read pool, runs inside the replica's loop.

Serve's request path (measured in ``benchmarks.graphql``, results/graphql.json, 2 shared
cores): through Serve's proxy a request costs two extra processes and a Ray actor call, which
took about 10 ms at c=1 (query p50 10.8 ms against 0.8 ms under plain uvicorn) and left
0.26-0.39 of plain's deposit throughput at c=32. With ``RAY_SERVE_ENABLE_DIRECT_INGRESS=1`` in
the environment of ``ray start`` (every node), the ingress replica serves HTTP on a port of its
own (30000-31000) and that gap closes: 0.80 of plain at c=32 alone, 1.05 with Ray's
``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` bundle (within this machine's noise of each other); query
p50 1.7-2.3 ms. On a cluster, ``RAY_SERVE_ENABLE_HA_PROXY=1`` puts Serve-managed HAProxy on
``http_port`` in front of those replica ports, one stable port per node (0.67-0.78 of plain
at c=32, measured with the bundle); Serve's proxy stays the fallback. The flags are read when Ray starts, so they go in the
nodes' ``ray start`` environment, not here; the dev head sets direct ingress, and HAProxy
while the ingress is plain HTTP (``eventray.platform.devstack.rayhead.serve_env``). A WebSocket counts as one ongoing request
for as long as it is open: ``max_ongoing_requests`` caps the subscriptions a replica holds
(10,000 were held and delivered on one replica with it at 11,024).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ray import serve

from eventray.platform.errors import ServiceUnavailable
from eventray.platform.sagas.settings import SagaSettings
from eventray.platform.settings import Settings
from eventray.serving.settings import ServingSettings

log = logging.getLogger("eventray.serving")


@serve.deployment(name="GraphQLIngress")
@serve.ingress()
class GraphQLIngress:
    """Thin shell: holds the settings and the model handles, builds the app."""

    def __init__(self, settings: Settings, serving: ServingSettings, *, saga_settings: SagaSettings | None = None,
                 ml_app: str | None = None, **models: Any) -> None:
        from eventray.platform.observability import logs

        logs.configure(json_lines=settings.log_json)
        self._settings = settings  # names the app by import path; the replica imports it
        self._serving = serving
        self._models = models
        self._saga_settings = saga_settings
        self._ml_app = ml_app

    def __serve_build_asgi_app__(self):  # noqa: ANN204 - Serve's hook
        from eventray.platform.composition import Runtime
        from eventray.serving.app import build_app

        return build_app(Runtime.load(self._settings), self._serving, behind_serve_proxy=True, models=self._models,
                         app_name=self._serving.app_name, saga_settings=self._saga_settings, ml_app=self._ml_app)


def run(rt: Any, serving: ServingSettings, *, wait_s: float = 120.0, models: bool | None = None,
        saga_settings: SagaSettings | None = None) -> str:
    """Deploy (or update) the GraphQL app of ``rt`` (the app's runtime) on its Ray cluster; returns the
    GraphQL URL.

    Serve's HTTP proxy listens on ``serving.http_host:http_port``, over HTTPS only when
    ``serving.https`` (the replicas' direct-ingress ports too). Waits until ``/healthz``
    answers through the proxy. ``models``: compose the model deployments into the app
    (``bind_models``) for the ML fields; default: when the app uses models, use the ML
    application ``settings.ml_app_name`` when it runs (``eventray models deploy``: one set of
    replicas for the API, the sagas and the projections), else bind them when
    ``settings.models_dir`` has trained ones. The schema is built here first, so an extension that does not merge fails
    before anything is deployed.
    ``saga_settings``: the saga coordinators the transfer fields reach (default: the
    ``EVENTRAY_SAGA_*`` of this process).
    """
    import httpx

    from eventray.serving.api.schema import executable_schema

    settings = rt.settings
    serving = serving.for_app(rt)
    executable_schema(rt)
    rt.connect_ray()
    http_options: dict[str, Any] = {"host": serving.http_host, "port": serving.http_port}
    tls = serving.ingress_tls(settings)
    if tls is not None:  # the direct-ingress replica ports take Serve's HTTP options too
        http_options.update(ssl_certfile=str(tls[0]), ssl_keyfile=str(tls[1]))
    serve.start(http_options=http_options)
    ml_app, bound = None, models if rt.app.models else False
    if bound is None:
        from eventray.serving.models.deployment import running_models

        if running_models(settings):
            ml_app, bound = settings.ml_app_name, False
    scaling = serving.autoscaling
    actor_options: dict[str, Any] = {"num_cpus": 0}
    if "runtime_env" in (options := rt.actor_options()):
        actor_options["runtime_env"] = options["runtime_env"]
    app = GraphQLIngress.options(  # type: ignore[attr-defined]  # added by @serve.deployment
        **({"autoscaling_config": scaling} if scaling else {"num_replicas": serving.replicas}),
        max_ongoing_requests=serving.max_ongoing_requests,
        ray_actor_options=actor_options,
    ).bind(settings, serving, saga_settings=saga_settings or SagaSettings(), ml_app=ml_app,
           **_model_apps(settings, bound))
    serve.run(app, name=serving.app_name, route_prefix=serving.route_prefix, blocking=False)
    if serving.http_redirect_port is not None:  # the settings allow it only with https
        from eventray.serving.redirect import start_redirect

        start_redirect(serving.http_host, serving.http_redirect_port, serving.http_port)
    base = serving.base_url
    verify: Any = ingress_verify(settings, serving)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=5, verify=verify).status_code == 200:
                return f"{base}/graphql"
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"the GraphQL app did not become healthy at {base}/healthz in {wait_s:.0f}s")
        time.sleep(0.5)


def ingress_verify(settings: Settings, serving: ServingSettings) -> Any:
    """What an httpx client of this ingress verifies its certificate with: an SSL context trusting
    the dev CA when the ingress serves the dev CA's certificate, else the system's trust (``True``)."""
    if not serving.https or serving.https_cert_file is not None:
        return True
    import ssl

    return ssl.create_default_context(cafile=str(settings.tls_dir / "ca.crt"))


def _model_apps(settings: Settings, models: bool | None) -> dict[str, Any]:
    from eventray.platform.ml.registry import Registry
    from eventray.serving.models import bind_models

    if models is None:
        models = bool(Registry(settings.models_dir).names())
    return bind_models(settings) if models else {}


def shutdown(serving: ServingSettings) -> None:
    """Remove the app from Serve, and its HTTP redirect (the shards and the stack stay up)."""
    serve.delete(serving.app_name)
    if serving.http_redirect_port is not None:
        from eventray.serving.redirect import stop_redirect

        stop_redirect(serving.http_redirect_port)
