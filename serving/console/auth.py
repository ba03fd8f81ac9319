"""Who may open the console, and how a browser carries that: a short-lived signed session cookie.

A browser cannot put ``Authorization: Bearer`` on a plain navigation, so ``/console/login``
takes a bearer token in a form, checks it with the API's own
:class:`~eventray.serving.api.principal.TokenVerifier`, and answers with a cookie that is

- an HMAC-SHA256-signed ``subject, role, expiry`` (no server-side session store: any replica
  with the same key verifies it), valid 15 minutes and never past the token's own expiry;
- ``HttpOnly`` (no script reads it), ``Secure`` (HTTPS only; browsers treat ``localhost`` and
  ``127.0.0.1`` as secure), ``SameSite=Strict`` (never sent on a request another site starts)
  and ``Path=<prefix>/console`` (never sent to ``/graphql``, where only bearer tokens count).

:class:`ConsoleGate` plugs that into :class:`~eventray.serving.middleware.auth.AuthMiddleware`:
below ``/console`` a bearer header or the cookie names the principal, the login page and the
static files need neither, and a request with neither is sent to the login page, never given
data (the anonymous access of the dev profile does not reach the console). The console's
routes then require the admin role, and every state-changing action must also carry htmx's
``HX-Request`` header from the same origin (see :func:`action_refusal`): a cross-site form can
neither send the cookie (SameSite) nor set that header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from eventray.serving.api.principal import ROLES, InvalidToken, Principal
from eventray.serving.middleware._asgi import Receive, Scope, Send, header, route_path

COOKIE_NAME = "eventray_console"
PREFIX = "/console"
#: paths below the console that need no principal
PUBLIC = ("/console/login", "/console/static/")
#: the one role that may open the console
CONSOLE_ROLE = "admin"
_VERSION = "v1"

#: the content security policy of every console response: its own scripts, styles and
#: connections only; no inline script or style (htmx's config is a meta tag, its indicator
#: styles are off); ``data:`` images for uPlot's legend markers
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class InvalidSession(InvalidToken):
    """The session cookie is malformed, badly signed, expired or names an unknown role."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ConsoleSessions:
    """Mints and reads session cookie values: ``v1.<claims>.<signature>``.

    Args:
        key: the HMAC key (see :func:`eventray.serving.console.settings.session_key`).
        ttl_s: the longest a session lasts.
        clock: seconds since the epoch (tests pass their own).
    """

    def __init__(self, key: bytes, *, ttl_s: int = 900, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 16:
            raise ValueError("the console session key must be at least 16 bytes")
        self._key = key
        self.ttl_s = ttl_s
        self._clock = clock

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, f"{_VERSION}.{body}".encode(), hashlib.sha256).digest())

    def mint(self, principal: Principal, *, not_after: float | None = None) -> tuple[str, int]:
        """A cookie value for ``principal`` and its expiry (epoch seconds): ``ttl_s`` from now,
        or ``not_after`` (the bearer token's own expiry) when that comes first."""
        if principal.subject is None or principal.role not in ROLES:
            raise InvalidSession("only an authenticated principal gets a console session")
        expires = int(self._clock()) + self.ttl_s
        if not_after is not None:
            expires = min(expires, int(not_after))
        body = _b64(json.dumps({"sub": principal.subject, "role": principal.role, "exp": expires},
                               separators=(",", ":"), sort_keys=True).encode())
        return f"{_VERSION}.{body}.{self._sign(body)}", expires

    def read(self, value: str) -> Principal:
        """The principal of a cookie value; raises :class:`InvalidSession` unless it is intact and current."""
        version, _, rest = value.partition(".")
        body, _, signature = rest.partition(".")
        # a minted value is ASCII; compare_digest raises on other text instead of refusing it
        if version != _VERSION or not body or not signature or not value.isascii():
            raise InvalidSession("malformed console session")
        if not hmac.compare_digest(self._sign(body), signature):
            raise InvalidSession("console session has a bad signature")
        try:
            claims = json.loads(_unb64(body))
            subject, role, expires = str(claims["sub"]), claims["role"], int(claims["exp"])
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidSession("malformed console session claims") from e
        if expires <= self._clock():
            raise InvalidSession("console session expired; log in again")
        if role not in ROLES:
            raise InvalidSession(f"console session names an unknown role {role!r}")
        return Principal(subject=subject, role=role)

    def set_cookie(self, value: str, *, path: str, expires: int) -> str:
        """The ``Set-Cookie`` value that stores ``value`` for the console under ``path``."""
        max_age = max(0, expires - int(self._clock()))
        return f"{COOKIE_NAME}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"

    @staticmethod
    def clear_cookie(*, path: str) -> str:
        """The ``Set-Cookie`` value that removes the session."""
        return f"{COOKIE_NAME}=; Path={path}; Max-Age=0; HttpOnly; Secure; SameSite=Strict"


def cookie_value(scope: Scope, name: str = COOKIE_NAME) -> str | None:
    """The value of cookie ``name`` on the request, or ``None``."""
    raw = header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value or None
    return None


def console_base(scope: Scope) -> str:
    """The console's URL path on this request (below the app's mount point, ``root_path``)."""
    return f"{(scope.get('root_path') or '').rstrip('/')}{PREFIX}"


def safe_next(target: str | None, base: str) -> str:
    """Where to go after login: ``target`` when it is a path of the console, else its home
    (never another host: no open redirect)."""
    home = f"{base}/"
    if not target:
        return home
    parts = urlsplit(target)
    # browsers resolve an encoded dot segment (%2e%2e) as "..": refuse it too
    if (parts.scheme or parts.netloc or not target.startswith(f"{base}/") or "\\" in target or ".." in parts.path
            or "%2e" in parts.path.lower()):
        return home
    if parts.path.startswith(f"{base}/login") or parts.path.startswith(f"{base}/static/"):
        return home
    return target


def admin_refusal(principal: Principal | None) -> str | None:
    """Why ``principal`` may not see the console, or ``None`` when it may."""
    if principal is None or principal.subject is None:
        return "log in with a bearer token first"
    if principal.role != CONSOLE_ROLE:
        return f"the console needs the {CONSOLE_ROLE} role; this token's role is {principal.role}"
    return None


def same_origin(scope: Scope) -> bool:
    """Whether the request's ``Origin`` (when it sent one) is the host it was sent to.

    ``Origin: null`` counts only with ``Sec-Fetch-Site: same-origin``: under the app's
    ``Referrer-Policy: no-referrer`` a browser sends ``null`` on a form POST from the page's own
    origin (the login form), and ``null`` alone is also what a sandboxed frame sends."""
    origin = header(scope, b"origin")
    fetch_site = header(scope, b"sec-fetch-site")
    if origin == "null":
        return fetch_site == "same-origin"
    if origin is None:
        return fetch_site in (None, "same-origin", "none")
    host = header(scope, b"host")
    return host is not None and urlsplit(origin).netloc == host


def action_refusal(scope: Scope) -> str | None:
    """Why a state-changing request (replay, promote) is refused, or ``None``: it must be a
    POST sent by htmx (``HX-Request: true``, a header no cross-site form can set) from this origin."""
    if scope.get("method") != "POST":
        return "a console action is a POST"
    if (header(scope, b"hx-request") or "").lower() != "true":
        return "a console action must come from the console page (HX-Request header missing)"
    if not same_origin(scope):
        return "a console action must come from the console's own origin"
    return None


class ConsoleGate:
    """The console's part of the auth middleware: which paths it covers and how it names the
    principal (bearer header first, then the session cookie), and how it refuses.

    The middleware calls :meth:`covers`, :meth:`is_public`, :meth:`principal` (raising
    :class:`~eventray.serving.api.principal.InvalidToken` for a bad cookie) and :meth:`refuse`.
    """

    def __init__(self, sessions: ConsoleSessions) -> None:
        self.sessions = sessions

    @staticmethod
    def covers(path: str) -> bool:
        return path == PREFIX or path.startswith(f"{PREFIX}/")

    @staticmethod
    def is_public(path: str) -> bool:
        return path == PUBLIC[0] or path.startswith(PUBLIC[1])

    def principal(self, scope: Scope) -> Principal | None:
        value = cookie_value(scope)
        return self.sessions.read(value) if value else None

    async def refuse(self, scope: Scope, _receive: Receive, send: Send, reason: str) -> None:
        """No (valid) credential: a page navigation goes to the login page, htmx is told to
        go there, anything else gets a 401. A bad cookie is cleared on the way."""
        base = console_base(scope)
        path = route_path(scope)
        query = (scope.get("query_string") or b"").decode("latin-1")
        target = f"{base}{path[len(PREFIX):]}" + (f"?{query}" if query else "")
        login = f"{base}/login?next={quote(target, safe='/')}"
        headers: list[tuple[bytes, bytes]] = [(b"cache-control", b"no-store")]
        if cookie_value(scope):
            headers.append((b"set-cookie", ConsoleSessions.clear_cookie(path=base).encode()))
        if header(scope, b"hx-request"):
            status, body = 401, reason.encode()
            headers += [(b"hx-redirect", login.encode()), (b"content-type", b"text/plain; charset=utf-8")]
        elif scope.get("method") == "GET" and "text/html" in (header(scope, b"accept") or ""):
            status, body = 303, b""
            headers.append((b"location", login.encode()))
        else:
            status, body = 401, reason.encode()
            headers.append((b"content-type", b"text/plain; charset=utf-8"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
