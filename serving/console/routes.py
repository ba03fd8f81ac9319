"""The console's routes on the ingress: login, the screens, their htmx fragments, the live feed.

Every route but the login page and the static files is behind the auth middleware's console
gate (:class:`~eventray.serving.console.auth.ConsoleGate`) and then needs the admin role
(:meth:`Console.page`). Replay and promote are the only state-changing routes; they are
POSTs that must come from htmx on this origin (:meth:`Console.action`), and each is logged
with its subject to ``eventray.console.audit``. Every data query has a row limit and runs
under a timeout (``EVENTRAY_CONSOLE_QUERY_TIMEOUT_S``), cancelled when it runs over.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from eventray.serving.api.principal import InvalidToken, TokenVerifier
from eventray.serving.console.auth import (
    CSP, PREFIX, ConsoleGate, ConsoleSessions, action_refusal, admin_refusal, console_base, safe_next, same_origin,
)
from eventray.serving.console.settings import ConsoleSettings, session_key
from eventray.serving.console.view import STATIC, VENDOR_HINT, environment, missing_vendor_files
from eventray.serving.middleware._asgi import PRINCIPAL
from eventray.serving.middleware.auth import bearer

log = logging.getLogger("eventray.console")
audit_log = logging.getLogger("eventray.console.audit")

Handler = Callable[[Request], Awaitable[Response]]
_MAX_FORM = 16 * 1024


class QueryFailed(Exception):
    """A screen's data query failed or ran past its timeout; the message says which."""


@dataclass
class AuditTrail:
    """The console's state-changing actions: each is logged, and the last few are shown on the page."""

    recent: collections.deque[dict[str, Any]] = field(default_factory=lambda: collections.deque(maxlen=20))

    def record(self, action: str, subject: str | None, target: str, detail: str = "", *,
               logged: bool = False) -> dict[str, Any]:
        """Keep ``action`` for the page, and log it unless the data layer ``logged`` it already."""
        entry = {"t": time.time() * 1000, "action": action, "subject": subject, "target": target, "detail": detail}
        if not logged:
            audit_log.info("console %s of %s by %s%s", action, target, subject, f" ({detail})" if detail else "",
                           extra={"subject": subject, "action": action, "target": target})
        self.recent.appendleft(entry)
        return entry

    def of(self, action: str) -> list[dict[str, Any]]:
        return [e for e in self.recent if e["action"] == action]


@dataclass
class ConsoleMount:
    """What :func:`build_app <eventray.serving.app.build_app>` wires in: routes, the auth gate,
    the policy of the console's responses, the paths gzip must leave alone, and a close hook."""

    routes: list[BaseRoute]
    gate: ConsoleGate | None = None
    csp: dict[str, str] = field(default_factory=dict)
    unbuffered: tuple[str, ...] = ()
    close: Callable[[], Awaitable[None]] = field(default=lambda: asyncio.sleep(0))


def mount_console(rt: Any, serving: Any, *, verifier: TokenVerifier, services: Callable[[], Any],
                  metrics: Any, ml: Any = None, app_name: str | None = None, model_app: str | None = None,
                  settings: ConsoleSettings | None = None) -> ConsoleMount:
    """The console of one replica, or an empty mount when ``EVENTRAY_CONSOLE_ENABLED=false``.
    Raises :class:`~eventray.platform.errors.ConfigurationError` where no session key may be had."""
    settings = settings or ConsoleSettings()
    if not settings.enabled:
        return ConsoleMount(routes=[])
    console = Console(rt, serving, verifier=verifier, services=services, metrics=metrics, ml=ml,
                      app_name=app_name or serving.app_name, model_app=model_app, settings=settings)
    return ConsoleMount(routes=console.routes(), gate=console.gate, csp={PREFIX: CSP},
                        unbuffered=(f"{PREFIX}/live/stream",), close=console.close)


class Console:
    """The console of one ingress replica: its templates, session signer, audit trail and live feed."""

    def __init__(self, rt: Any, serving: Any, *, verifier: TokenVerifier, services: Callable[[], Any], metrics: Any,
                 ml: Any, app_name: str, settings: ConsoleSettings, model_app: str | None = None) -> None:
        from eventray.serving.console.live import LiveFeed, head_scraper

        self.rt = rt
        self.settings = settings
        self.verifier = verifier
        self.sessions = ConsoleSessions(session_key(settings, serving), ttl_s=settings.session_ttl_s)
        self.gate = ConsoleGate(self.sessions)
        self.services = services
        self.ml = ml
        self.app_name = app_name
        self.model_app = model_app or app_name  # the Serve application that runs the models
        self.env = environment()
        self.audit = AuditTrail()
        self.live = LiveFeed(metrics=metrics, topic=rt.topic, scrape=head_scraper(rt.settings),
                             projection_lag=self._projection_lag, replicas=self._replicas,
                             interval_s=settings.live_interval_s)

    async def close(self) -> None:
        from eventray.serving.console import data

        await self.live.close()
        services = self.services()
        if services is not None:
            await data.close(services)

    # --- rendering and guards ---

    def render(self, request: Request, template: str, status: int = 200, headers: dict[str, str] | None = None,
               **context: Any) -> HTMLResponse:
        base = console_base(request.scope)
        principal = request.scope.get(PRINCIPAL)
        html = self.env.get_template(template).render(
            base=base, static=f"{base}/static", principal=principal, app_name=self.rt.app.name,
            missing_vendor=missing_vendor_files(), vendor_hint=VENDOR_HINT, **context)
        return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store", **(headers or {})})

    def refused(self, request: Request, reason: str, status: int = 403) -> HTMLResponse:
        log.info("console refused %s %s: %s", request.method, request.url.path, reason)
        fragment = request.headers.get("hx-request") == "true"
        return self.render(request, "_refused.html" if fragment else "refused.html", status=status, reason=reason)

    def page(self, handler: Handler) -> Handler:
        """Only the admin role reaches ``handler`` (the gate has already named the principal)."""
        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            reason = admin_refusal(request.scope.get(PRINCIPAL))
            if reason is not None:
                return self.refused(request, reason)
            return await handler(request)
        return guarded

    def action(self, handler: Handler) -> Handler:
        """A state-changing route: the admin role, a POST from htmx on this origin."""
        @functools.wraps(handler)
        async def guarded(request: Request) -> Response:
            reason = admin_refusal(request.scope.get(PRINCIPAL)) or action_refusal(request.scope)
            if reason is not None:
                return self.refused(request, reason)
            return await handler(request)
        return guarded

    async def query(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` under the query timeout (a blocking one in a thread); raises
        :class:`QueryFailed` with a message fit for the page."""
        name = getattr(fn, "__name__", "query")
        try:
            if inspect.iscoroutinefunction(fn):
                return await asyncio.wait_for(fn(*args, **kwargs), self.settings.query_timeout_s)
            result = await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), self.settings.query_timeout_s)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.settings.query_timeout_s)
            return result
        except TimeoutError as e:
            raise QueryFailed(f"{name} took longer than {self.settings.query_timeout_s:g} s and was cancelled") from e
        except QueryFailed:
            raise
        except Exception as e:  # noqa: BLE001 - shown on the page and logged; the console stays up
            log.warning("console query %s failed: %s: %s", name, type(e).__name__, e)
            raise QueryFailed(f"{name} failed: {type(e).__name__}: {e}") from e

    def api(self) -> Any:
        """The replica's ApiServices; :class:`QueryFailed` while the replica is still starting."""
        services = self.services()
        if services is None:
            raise QueryFailed("the replica is still starting; reload in a moment")
        return services

    # --- login ---

    async def login_page(self, request: Request) -> Response:
        base = console_base(request.scope)
        return self.render(request, "login.html", next=safe_next(request.query_params.get("next"), base), error=None)

    async def login(self, request: Request) -> Response:
        base = console_base(request.scope)
        form = await read_form(request)
        target = safe_next(form.get("next"), base)

        def again(error: str, status: int) -> Response:
            return self.render(request, "login.html", status=status, next=target, error=error)

        if not same_origin(request.scope):
            return again("the login form must be sent from the console's own page", 403)
        token = (form.get("token") or "").strip()
        token = bearer(token) or token
        if not token:
            return again("paste a bearer token", 400)
        try:
            principal = self.verifier.verify(token)
        except InvalidToken as e:
            log.info("console login refused: %s", e)
            return again(f"the token was refused: {e}", 401)
        reason = admin_refusal(principal)
        if reason is not None:
            log.info("console login refused for %s: %s", principal.subject, reason)
            return again(reason, 403)
        value, expires = self.sessions.mint(principal, not_after=_token_expiry(token))
        audit_log.info("console login by %s (session until %s)", principal.subject,
                       time.strftime("%H:%M:%S", time.gmtime(expires)), extra={"subject": principal.subject,
                                                                               "action": "login"})
        response = RedirectResponse(target, status_code=303)
        response.headers["set-cookie"] = self.sessions.set_cookie(value, path=base, expires=expires)
        response.headers["cache-control"] = "no-store"
        return response

    async def logout(self, request: Request) -> Response:
        base = console_base(request.scope)
        response = Response(status_code=204, headers={"hx-redirect": f"{base}/login", "cache-control": "no-store"})
        response.headers["set-cookie"] = ConsoleSessions.clear_cookie(path=base)
        return response

    async def home(self, request: Request) -> Response:
        return RedirectResponse(f"{console_base(request.scope)}/events", status_code=303)

    # --- the live feed's slow figures ---

    async def _projection_lag(self) -> dict[str, int]:
        from eventray.serving.console import data

        services = self.services()
        if services is None:
            return {}
        rows = await self.query(data.projections, services)
        lag: dict[str, int] = {}
        for row in rows:
            if row.get("current", True) and row.get("lag") is not None:
                lag[str(row["name"])] = int(row["lag"])
        return lag

    def _replicas(self) -> dict[str, int]:
        from eventray.serving.console.live import running_replicas
        from eventray.serving.models.metrics import replica_counts

        apps = dict.fromkeys((self.app_name, self.model_app))
        return running_replicas([item for app in apps for item in replica_counts(app).items()])

    # --- the route table ---

    def routes(self) -> list[BaseRoute]:
        from eventray.serving.console import screens

        s = screens.Screens(self)
        page, action = self.page, self.action
        return [
            Route(PREFIX, page(self.home)),
            Route(f"{PREFIX}/", page(self.home)),
            Route(f"{PREFIX}/login", self.login_page, methods=["GET"]),
            Route(f"{PREFIX}/login", self.login, methods=["POST"]),
            Route(f"{PREFIX}/logout", self.logout, methods=["POST"]),
            Route(f"{PREFIX}/events", page(s.events)),
            Route(f"{PREFIX}/events/timeline", page(s.timeline)),
            Route(f"{PREFIX}/events/chain", page(s.chain)),
            Route(f"{PREFIX}/projections", page(s.projections)),
            Route(f"{PREFIX}/projections/table", page(s.projection_table)),
            Route(f"{PREFIX}/projections/{{name}}/v{{version:int}}/dead-letters", page(s.dead_letters)),
            Route(f"{PREFIX}/projections/{{name}}/replay", page(s.replay_confirm), methods=["GET"]),
            Route(f"{PREFIX}/projections/{{name}}/replay", action(s.replay), methods=["POST"]),
            Route(f"{PREFIX}/replays/{{replay_id}}", page(s.replay_progress)),
            Route(f"{PREFIX}/sagas", page(s.sagas)),
            Route(f"{PREFIX}/sagas/{{saga}}/{{saga_id:path}}", page(s.saga_detail)),
            Route(f"{PREFIX}/live", page(s.live)),
            Route(f"{PREFIX}/live/stream", page(s.live_stream)),
            Route(f"{PREFIX}/models", page(s.models)),
            Route(f"{PREFIX}/models/{{name}}/promote", action(s.promote), methods=["POST"]),
            Route(f"{PREFIX}/cluster", page(s.cluster)),
            Mount(f"{PREFIX}/static", app=StaticFiles(directory=STATIC, check_dir=False), name="console-static"),
        ]


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (bounded), first value of each field."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            break
    fields = parse_qs(body[:_MAX_FORM].decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


def _token_expiry(token: str) -> float | None:
    """The ``exp`` of a token already verified (so reading it unverified is safe)."""
    import jwt

    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(exp) if exp is not None else None
