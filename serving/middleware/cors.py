"""CORS with an explicit origin allow-list (no wildcard): preflights are answered here,
simple responses get ``Access-Control-Allow-Origin`` only for listed origins."""

from __future__ import annotations

from eventray.serving.middleware._asgi import ASGIApp, Message, Receive, Scope, Send, header

_ALLOW_HEADERS = b"authorization, content-type, x-request-id"
_ALLOW_METHODS = b"GET, POST, OPTIONS"


class CORSMiddleware:
    """Allows cross-origin calls from ``origins`` only."""

    def __init__(self, app: ASGIApp, *, origins: tuple[str, ...] | list[str], max_age_s: int = 600) -> None:
        if "*" in origins:
            raise ValueError("CORS origins must be listed explicitly; '*' is refused with credentials")
        self.app = app
        self._origins = frozenset(origins)
        self._max_age = str(max_age_s).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = header(scope, b"origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = origin in self._origins
        if scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method"):
            headers = [(b"vary", b"Origin")]
            if allowed:
                headers += [
                    (b"access-control-allow-origin", origin.encode()),
                    (b"access-control-allow-methods", _ALLOW_METHODS),
                    (b"access-control-allow-headers", _ALLOW_HEADERS),
                    (b"access-control-allow-credentials", b"true"),
                    (b"access-control-max-age", self._max_age),
                ]
            await send({"type": "http.response.start", "status": 204 if allowed else 403, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"vary", b"Origin")]
                if allowed:
                    extra += [(b"access-control-allow-origin", origin.encode()),
                              (b"access-control-allow-credentials", b"true"),
                              (b"access-control-expose-headers", b"x-request-id, retry-after")]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_cors)
