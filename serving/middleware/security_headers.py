"""Security headers on every HTTP response.

The GraphiQL page loads its scripts from a CDN, so the content security policy of
``/graphql`` HTML pages allows that origin; everything else gets a locked-down policy.
"""

from __future__ import annotations

from eventray.serving.middleware._asgi import ASGIApp, Message, Receive, Scope, Send

_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
_EXPLORER_CSP = (b"content-security-policy",
                 b"default-src 'self'; script-src 'self' 'unsafe-inline' https://unpkg.com; "
                 b"style-src 'self' 'unsafe-inline' https://unpkg.com; img-src 'self' data:; "
                 b"connect-src 'self' ws: wss:; frame-ancestors 'none'")


class SecurityHeadersMiddleware:
    """Adds nosniff, frame denial, referrer policy, CSP and (when ``hsts``) HSTS."""

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self._extra = [*_COMMON]
        if hsts:
            self._extra.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                is_html = any(k == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                message["headers"] = [*headers, *self._extra, _EXPLORER_CSP if is_html else _API_CSP]
            await send(message)

        await self.app(scope, receive, send_with_headers)
