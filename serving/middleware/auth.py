"""JWT bearer authentication: puts the verified :class:`Principal` in the scope, or answers 401.

HTTP: ``Authorization: Bearer <token>``. A missing token is allowed only where the settings
allow anonymous reads (dev); a present but invalid token is always a 401. WebSocket: a
header token is checked at the handshake (an invalid one closes with 4401); browsers cannot
set headers there, so without one the graphql-transport-ws ``connection_init`` payload
carries it (see :mod:`eventray.serving.api.live_auth`).
"""

from __future__ import annotations

import logging

from eventray.serving.api.principal import ANONYMOUS, InvalidToken, TokenVerifier
from eventray.serving.middleware._asgi import (
    PRINCIPAL, ASGIApp, Receive, Scope, Send, graphql_error, header, route_path, send_json,
)

log = logging.getLogger("eventray.serving.auth")


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
    """

    def __init__(self, app: ASGIApp, *, verifier: TokenVerifier, allow_anonymous: bool,
                 public_paths: tuple[str, ...] = ("/healthz", "/metrics")) -> None:
        self.app = app
        self._verifier = verifier
        self._anonymous = allow_anonymous
        self._public = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or route_path(scope) in self._public:
            await self.app(scope, receive, send)
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


def _is_explorer(scope: Scope) -> bool:
    """A browser's GET for the GraphiQL page (no query): it holds no data."""
    accept = header(scope, b"accept") or ""
    return scope["method"] == "GET" and "text/html" in accept and b"query=" not in scope.get("query_string", b"")


async def _unauthorized(send: Send, message: str) -> None:
    await send_json(send, 401, graphql_error(message, "UNAUTHENTICATED"),
                    [(b"www-authenticate", b'Bearer realm="eventray"')])
