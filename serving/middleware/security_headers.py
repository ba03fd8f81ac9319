"""Security headers on every HTTP response.

The GraphiQL page loads its scripts from a CDN, so the content security policy of
``/graphql`` HTML pages allows that origin; everything else gets a locked-down policy, except
paths given a policy of their own (the console's, which serves its own scripts and styles).
"""

from __future__ import annotations

from collections.abc import Mapping

from eventray.serving.middleware._asgi import ASGIApp, Message, Receive, Scope, Send, route_path

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
    """Adds nosniff, frame denial, referrer policy, CSP and (when ``hsts``) HSTS.

    ``path_csp``: ``{path prefix: policy}``; a path equal to a prefix or below it (``prefix/...``)
    gets that policy on every response instead of the API's or the explorer's.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool = False, path_csp: Mapping[str, str] | None = None) -> None:
        self.app = app
        self._extra = [*_COMMON]
        if hsts:
            self._extra.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
        self._path_csp = [(prefix.rstrip("/"), (b"content-security-policy", policy.encode()))
                          for prefix, policy in (path_csp or {}).items()]

    def _own_policy(self, path: str) -> tuple[bytes, bytes] | None:
        for prefix, policy in self._path_csp:
            if path == prefix or path.startswith(f"{prefix}/"):
                return policy
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        own = self._own_policy(route_path(scope)) if self._path_csp else None

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if own is not None:
                    csp = own
                else:
                    is_html = any(k == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                    csp = _EXPLORER_CSP if is_html else _API_CSP
                message["headers"] = [*headers, *self._extra, csp]
            await send(message)

        await self.app(scope, receive, send_with_headers)
