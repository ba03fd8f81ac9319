"""JWT bearer authentication: puts the verified :class:`Principal` in the scope, or answers 401.

HTTP: ``Authorization: Bearer <token>``. A missing token is allowed only where the settings
allow anonymous reads (dev); a present but invalid token is always a 401. WebSocket: a
header token is checked at the handshake (an invalid one closes with 4401); browsers cannot
set headers there, so without one the graphql-transport-ws ``connection_init`` payload
carries it (see :mod:`eventray.serving.api.live_auth`).

A ``sessions`` gate (the console's, :class:`eventray.serving.console.auth.ConsoleGate`) takes
over the paths it covers: there a bearer header or its session cookie names the principal,
anonymous access never applies, and a request with neither is refused the gate's way.
"""

from __future__ import annotations

import logging
from typing import Protocol

from eventray.serving.api.principal import ANONYMOUS, InvalidToken, Principal, TokenVerifier
from eventray.serving.middleware._asgi import (
    PRINCIPAL, ASGIApp, Receive, Scope, Send, graphql_error, header, route_path, send_json,
)

log = logging.getLogger("eventray.serving.auth")


class SessionGate(Protocol):
    """Paths authenticated by a session cookie as well as a bearer header (the console's)."""

    def covers(self, path: str) -> bool: ...

    def is_public(self, path: str) -> bool: ...

    def principal(self, scope: Scope) -> Principal | None: ...

    async def refuse(self, scope: Scope, receive: Receive, send: Send, reason: str) -> None: ...


def bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` value, else ``None``."""
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class AuthMiddleware:
    """Verifies bearer tokens on the protected paths.

    Args:
        app: the wrapped ASGI app.
        verifier: checks signatures, expiry and audience.
        allow_anonymous: let requests without a token through as the anonymous principal.
        public_paths: paths that need no principal (health, metrics); every other path
            does, so a new route is protected by default.
        sessions: a gate for the paths it covers (see :class:`SessionGate`).
    """

    def __init__(self, app: ASGIApp, *, verifier: TokenVerifier, allow_anonymous: bool,
                 public_paths: tuple[str, ...] = ("/healthz", "/metrics"),
                 sessions: SessionGate | None = None) -> None:
        self.app = app
        self._verifier = verifier
        self._anonymous = allow_anonymous
        self._public = frozenset(public_paths)
        self._sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        path = route_path(scope) if kind in ("http", "websocket") else ""
        if kind not in ("http", "websocket") or path in self._public:
            await self.app(scope, receive, send)
            return
        if self._sessions is not None and kind == "http" and self._sessions.covers(path):
            await self._session_request(self._sessions, path, scope, receive, send)
            return
        token = bearer(header(scope, b"authorization"))
        if token is None:
            if kind == "websocket":
                # checked on connection_init instead
                await self.app(scope, receive, send)
                return
            if self._anonymous or _is_explorer(scope):
                scope[PRINCIPAL] = ANONYMOUS
                await self.app(scope, receive, send)
                return
            await _unauthorized(send, "a bearer token is required")
            return
        try:
            scope[PRINCIPAL] = self._verifier.verify(token)
        except InvalidToken as e:
            log.info("rejected token: %s", e)
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 4401})
                return
            await _unauthorized(send, f"invalid token: {e}")
            return
        await self.app(scope, receive, send)


    async def _session_request(self, gate: SessionGate, path: str, scope: Scope, receive: Receive,
                               send: Send) -> None:
        if gate.is_public(path):
            await self.app(scope, receive, send)
            return
        token = bearer(header(scope, b"authorization"))
        try:
            principal = self._verifier.verify(token) if token is not None else gate.principal(scope)
        except InvalidToken as e:
            log.info("rejected %s: %s", "token" if token is not None else "session", e)
            await gate.refuse(scope, receive, send, str(e))
            return
        if principal is None:
            await gate.refuse(scope, receive, send, "log in first")
            return
        scope[PRINCIPAL] = principal
        await self.app(scope, receive, send)


def _is_explorer(scope: Scope) -> bool:
    """A browser's GET for the GraphiQL page (no query): it holds no data."""
    accept = header(scope, b"accept") or ""
    return scope["method"] == "GET" and "text/html" in accept and b"query=" not in scope.get("query_string", b"")


async def _unauthorized(send: Send, message: str) -> None:
    await send_json(send, 401, graphql_error(message, "UNAUTHENTICATED"),
                    [(b"www-authenticate", b'Bearer realm="eventray"')])
