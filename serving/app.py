"""The ingress: a Starlette app with Ariadne at ``/graphql`` behind the security middleware.

Routes: ``POST``/``GET /graphql`` (queries; mutations over POST), the GraphiQL explorer on a
browser's ``GET /graphql``, graphql-transport-ws subscriptions on ``/graphql``, ``/healthz``
and ``/metrics``, and the web console below ``/console`` (:mod:`eventray.serving.console`).
The same app runs inside the Ray Serve deployment and, for the benchmark baseline, under
plain uvicorn.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ariadne.asgi import GraphQL
from ariadne.exceptions import WebSocketConnectionError
from ariadne.explorer import ExplorerGraphiQL
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from eventray.platform.sagas.settings import SagaSettings
from eventray.serving.api.document_cache import DocumentCache
from eventray.serving.api.errors import format_error
from eventray.serving.api.http import HardenedHTTPHandler
from eventray.serving.api.http_cache import ReadModelCache, pool_positions
from eventray.serving.api.limits import query_limits
from eventray.serving.api.ws import CappedTransportWSHandler
from eventray.serving.api.principal import ANONYMOUS, InvalidToken, TokenVerifier
from eventray.serving.api.schema import executable_schema
from eventray.serving.api.services import ApiServices
from eventray.serving.console.routes import mount_console
from eventray.serving.metrics import Metrics
from eventray.serving.middleware._asgi import PRINCIPAL, REQUEST_ID
from eventray.serving.middleware.auth import AuthMiddleware, bearer
from eventray.serving.middleware.body_limit import BodyLimitMiddleware
from eventray.serving.middleware.cors import CORSMiddleware
from eventray.serving.middleware.gzip import GZipMiddleware
from eventray.serving.middleware.metrics import MetricsMiddleware
from eventray.serving.middleware.operations import OperationMetrics
from eventray.serving.middleware.ratelimit import RateLimitMiddleware
from eventray.serving.middleware.request_id import RequestIdMiddleware
from eventray.serving.middleware.security_headers import SecurityHeadersMiddleware
from eventray.serving.settings import ServingSettings

log = logging.getLogger("eventray.serving")


def build_app(rt: Any, serving: ServingSettings, *, behind_serve_proxy: bool = False,
              models: Mapping[str, Any] | None = None, app_name: str | None = None,
              saga_settings: SagaSettings | None = None, ml_app: str | None = None) -> Any:
    """The ingress ASGI app of the app of ``rt`` (its runtime: settings, domain) with ``serving``
    (API options).

    ``behind_serve_proxy``: Serve's proxy echoes the request id itself. ``models``: handles
    to the model deployments bound into the ingress (``bind_models``), for the ML fields and
    ``/metrics``; ``app_name``: the Serve application whose replica counts ``/metrics`` shows;
    ``saga_settings``: the saga coordinators the saga clients reach (default: ``EVENTRAY_SAGA_*``).
    ``ml_app``: with no ``models`` bound, the running ML application (``eventray models deploy``)
    whose deployments the ML fields, ``/metrics`` and the console's Models screen use.
    """
    settings = rt.settings
    serving.check_transport(settings)
    schema = executable_schema(rt)  # a bad extension fails here, before the replica serves
    ext = rt.app.graphql_extension()
    verifier = TokenVerifier(serving)
    metrics = Metrics()
    state: dict[str, ApiServices] = {}
    ml = _ml_client(settings, models, ml_app)
    model_app = (ml_app if not models and ml_app else None) or app_name or serving.app_name
    console = mount_console(rt, serving, verifier=verifier, services=lambda: state.get("services"), metrics=metrics,
                            ml=ml, app_name=app_name or serving.app_name, model_app=model_app)

    def context(request: Any, _data: Any) -> dict[str, Any]:
        services = state["services"]
        ctx = {
            "request": request,
            "services": services,
            "app": services.app_state,
            "principal": request.scope.get(PRINCIPAL) or ANONYMOUS,
            "request_id": request.scope.get(REQUEST_ID, ""),
            "ml": ml,
            "events_rule": ext.events_rule,
        }
        ctx["loaders"] = dict(ext.loaders(ctx)) if ext.loaders is not None else {}
        return ctx

    def on_connect(websocket: Any, payload: Any) -> None:
        if websocket.scope.get(PRINCIPAL) is not None:
            return
        payload = payload if isinstance(payload, dict) else {}
        token = bearer(payload.get("Authorization") or payload.get("authorization")) or payload.get("token")
        if token:
            try:
                websocket.scope[PRINCIPAL] = verifier.verify(token)
            except InvalidToken as e:
                raise WebSocketConnectionError({"message": f"invalid token: {e}", "code": "UNAUTHENTICATED"}) from e
        elif serving.anonymous_allowed:
            websocket.scope[PRINCIPAL] = ANONYMOUS
        else:
            raise WebSocketConnectionError({"message": "a bearer token is required", "code": "UNAUTHENTICATED"})

    documents = DocumentCache(hide_suggestions=not serving.suggestions_on)

    async def positions(names: list[str]) -> list[tuple[str, int, int]]:
        return await pool_positions(state["services"].pool, names)

    graphql = GraphQL(
        schema,
        context_value=context,
        query_parser=documents.parse,
        query_validator=documents.validate,
        error_formatter=format_error,
        validation_rules=[query_limits(serving.query_limits)],
        execute_get_queries=True,
        introspection=serving.introspection_on,
        explorer=ExplorerGraphiQL(title="eventray", explorer_plugin=True),
        http_handler=HardenedHTTPHandler(serving, parse=documents.parse, cache=ReadModelCache(schema, positions)),
        websocket_handler=CappedTransportWSHandler(max_per_subject=serving.max_subscriptions_per_subject,
                                                   on_connect=on_connect),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state["services"] = await ApiServices.start(rt, serving, metrics=metrics, sagas=saga_settings, setup=ext.setup)
        try:
            yield
        finally:
            await console.close()
            await state["services"].close()

    async def healthz(_request: Request) -> JSONResponse:
        ready = "services" in state
        return JSONResponse({"status": "ok" if ready else "starting"}, status_code=200 if ready else 503)

    async def render_metrics(_request: Request) -> PlainTextResponse:
        services = state.get("services")
        if services is not None:
            metrics.subscriptions_active = services.hub.subscriber_count
        text = metrics.render()
        if ml is not None:
            from eventray.serving.models import metrics as model_metrics

            text += await model_metrics.collect(ml, model_app)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    app: Any = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/metrics", render_metrics),
            *console.routes,
        ],
        lifespan=lifespan,
    )
    # innermost first; requests pass them in the reverse order
    app = RateLimitMiddleware(app, rate=serving.rate_limit_per_s, burst=serving.rate_limit_burst)
    app = AuthMiddleware(app, verifier=verifier, allow_anonymous=serving.anonymous_allowed, sessions=console.gate)
    app = BodyLimitMiddleware(app, max_bytes=serving.max_body_bytes)
    app = OperationMetrics(app)
    app = GZipMiddleware(app, minimum_size=serving.gzip_min_size, exclude_paths=console.unbuffered)
    app = CORSMiddleware(app, origins=serving.cors_origins)
    app = SecurityHeadersMiddleware(app, hsts=serving.hsts, path_csp=console.csp)
    app = RequestIdMiddleware(app, echo=not behind_serve_proxy)
    app = MetricsMiddleware(app, metrics=metrics)
    return app


def _ml_client(settings: Any, models: Mapping[str, Any] | None, ml_app: str | None = None) -> Any:
    """The :class:`~eventray.serving.models.MLClient` over the bound model handles, else over
    the deployments of the ML application ``ml_app``, else None."""
    from eventray.platform.ml.registry import Registry
    from eventray.serving.models import MLClient

    if not models:
        return MLClient.connect(settings, app_name=ml_app) if ml_app else None

    return MLClient(handles=dict(models), registry=Registry(settings.models_dir))
