"""The console's wiring into the ingress middleware: the auth gate below ``/console`` (bearer
header or session cookie, never anonymous), gzip leaving the live stream alone, and the
console's own content security policy. Driven as plain ASGI, and once through the real
console routes (a fake runtime; no Ray, Kafka or PostgreSQL)."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from eventray.serving.api.principal import Principal, TokenVerifier, mint_token
from eventray.serving.console.auth import COOKIE_NAME, CSP, ConsoleGate, ConsoleSessions
from eventray.serving.console.routes import ConsoleMount, mount_console
from eventray.serving.console.settings import ConsoleSettings
from eventray.serving.metrics import Metrics
from eventray.serving.middleware._asgi import PRINCIPAL
from eventray.serving.middleware.auth import AuthMiddleware
from eventray.serving.middleware.gzip import GZipMiddleware
from eventray.serving.middleware.security_headers import SecurityHeadersMiddleware
from eventray.serving.settings import DEV_JWT_SECRET, ServingSettings

NOW = 1_700_000_000.0
KEY = b"console-test-key-of-32-bytes!!!!"


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


async def call(app, path: str, *, method: str = "GET", root_path: str = "", **headers: str) -> Reply:
    """One HTTP request through ``app`` as raw ASGI (header names: ``hx_request`` is ``hx-request``)."""
    route, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "https",
        "path": f"{root_path}{route}", "raw_path": f"{root_path}{route}".encode(), "root_path": root_path,
        "query_string": query.encode(), "client": ("127.0.0.1", 50000), "server": ("testserver", 443),
        "headers": [(b"host", b"testserver"),
                    *((k.replace("_", "-").encode(), v.encode()) for k, v in headers.items())],
    }
    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Reply(start["status"], [(k.decode(), v.decode()) for k, v in start.get("headers", [])], body)


class Inner:
    """The app behind the middleware: it records what reached it and answers with the principal."""

    def __init__(self, *, content_type: str = "text/plain", size: int = 0) -> None:
        self.seen: list[dict] = []
        self._content_type = content_type.encode()
        self._size = size

    async def __call__(self, scope, receive, send) -> None:
        self.seen.append(scope)
        principal = scope.get(PRINCIPAL)
        body = (f"{principal.role}:{principal.subject}" if principal else "no principal").encode()
        body = body.ljust(self._size, b".")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", self._content_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def verifier() -> TokenVerifier:
    return TokenVerifier(ServingSettings(profile="dev", jwt_secret=None))


def token(subject: str, role: str, **kwargs) -> str:
    return mint_token(subject, role, secret=DEV_JWT_SECRET, **kwargs)


def bearer(subject: str, role: str) -> str:
    return f"Bearer {token(subject, role)}"


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def sessions(clock: Clock) -> ConsoleSessions:
    return ConsoleSessions(KEY, clock=clock)


@pytest.fixture()
def inner() -> Inner:
    return Inner()


def gated(inner: Inner, verifier: TokenVerifier, sessions: ConsoleSessions, *, anonymous: bool) -> AuthMiddleware:
    return AuthMiddleware(inner, verifier=verifier, allow_anonymous=anonymous, sessions=ConsoleGate(sessions))


def cookie(sessions: ConsoleSessions, principal: Principal) -> str:
    return f"{COOKIE_NAME}={sessions.mint(principal)[0]}"


# --- the auth gate below /console ----------------------------------------------------------------


@pytest.mark.parametrize("anonymous", [True, False], ids=["anonymous-allowed", "anonymous-refused"])
async def test_a_page_navigation_without_credentials_goes_to_the_login_page(inner, verifier, sessions,
                                                                            anonymous: bool) -> None:
    app = gated(inner, verifier, sessions, anonymous=anonymous)
    reply = await call(app, "/console/events?type=AccountOpened", accept="text/html,application/xhtml+xml")
    assert inner.seen == []
    assert reply.status == 303
    location = urlsplit(reply.header("location"))
    assert location.path == "/console/login"
    assert parse_qs(location.query) == {"next": ["/console/events?type=AccountOpened"]}
    assert reply.header("cache-control") == "no-store"
    assert reply.header("set-cookie") is None  # there was no cookie to clear


@pytest.mark.parametrize("anonymous", [True, False], ids=["anonymous-allowed", "anonymous-refused"])
async def test_an_api_style_request_without_credentials_is_a_401(inner, verifier, sessions, anonymous: bool) -> None:
    reply = await call(gated(inner, verifier, sessions, anonymous=anonymous), "/console/events")
    assert inner.seen == []
    assert reply.status == 401 and reply.body == b"log in first"


async def test_htmx_without_credentials_is_told_where_to_log_in(inner, verifier, sessions) -> None:
    reply = await call(gated(inner, verifier, sessions, anonymous=True), "/console/events/timeline",
                       hx_request="true", accept="text/html")
    assert inner.seen == []
    assert reply.status == 401
    assert reply.header("hx-redirect") == "/console/login?next=/console/events/timeline"


async def test_anonymous_access_opens_the_api_but_never_the_console(inner, verifier, sessions) -> None:
    app = gated(inner, verifier, sessions, anonymous=True)
    api = await call(app, "/graphql", method="POST")
    assert api.status == 200 and api.body == b"anonymous:None"
    for path in ("/console", "/console/", "/console/events", "/console/static"):
        assert (await call(app, path)).status == 401, path
    assert len(inner.seen) == 1


async def test_a_customer_bearer_token_reaches_the_app_as_the_customer(inner, verifier, sessions) -> None:
    reply = await call(gated(inner, verifier, sessions, anonymous=False), "/console/events",
                       authorization=bearer("bob", "customer"))
    assert reply.status == 200 and reply.body == b"customer:bob"
    assert inner.seen[0][PRINCIPAL] == Principal(subject="bob", role="customer")


async def test_a_valid_session_cookie_names_the_principal(inner, verifier, sessions) -> None:
    reply = await call(gated(inner, verifier, sessions, anonymous=False), "/console/events",
                       cookie=f"theme=dark; {cookie(sessions, Principal('alice', 'admin'))}")
    assert reply.status == 200 and reply.body == b"admin:alice"


async def test_the_bearer_header_comes_before_the_cookie(inner, verifier, sessions) -> None:
    reply = await call(gated(inner, verifier, sessions, anonymous=False), "/console/events",
                       authorization=bearer("bob", "customer"), cookie=cookie(sessions, Principal("alice", "admin")))
    assert reply.body == b"customer:bob"


async def test_an_invalid_bearer_token_is_refused_even_with_anonymous_access(inner, verifier, sessions) -> None:
    forged = mint_token("eve", "admin", secret="not-the-dev-secret-but-as-long-as-one")
    reply = await call(gated(inner, verifier, sessions, anonymous=True), "/console/events",
                       authorization=f"Bearer {forged}", cookie=cookie(sessions, Principal("alice", "admin")))
    assert inner.seen == []
    assert reply.status == 401 and b"Signature verification failed" in reply.body


async def test_a_bad_session_cookie_is_refused_and_cleared(inner, verifier, sessions) -> None:
    forged = ConsoleSessions(b"another-key-of-32-bytes-length!!").mint(Principal("eve", "admin"))[0]
    reply = await call(gated(inner, verifier, sessions, anonymous=True), "/console/events",
                       accept="text/html", cookie=f"{COOKIE_NAME}={forged}")
    assert inner.seen == []
    assert reply.status == 303 and reply.header("location").startswith("/console/login?next=")
    assert reply.header("set-cookie") == ConsoleSessions.clear_cookie(path="/console")


async def test_an_expired_session_cookie_is_refused(inner, verifier, sessions, clock) -> None:
    app = gated(inner, verifier, sessions, anonymous=False)
    value = cookie(sessions, Principal("alice", "admin"))
    assert (await call(app, "/console/events", cookie=value)).status == 200
    clock.now += sessions.ttl_s
    reply = await call(app, "/console/events", cookie=value)
    assert reply.status == 401 and b"expired" in reply.body
    assert len(inner.seen) == 1


@pytest.mark.parametrize("path", ["/console/login", "/console/static/console.css", "/console/static/vendor/htmx.min.js"])
async def test_the_login_page_and_static_files_need_no_credentials(inner, verifier, sessions, path: str) -> None:
    reply = await call(gated(inner, verifier, sessions, anonymous=False), path)
    assert reply.status == 200 and reply.body == b"no principal"
    assert PRINCIPAL not in inner.seen[0]


async def test_a_public_console_path_does_not_read_a_bad_cookie(inner, verifier, sessions) -> None:
    """The login page must stay reachable with a stale cookie, or a user could never log in again."""
    reply = await call(gated(inner, verifier, sessions, anonymous=False), "/console/login",
                       cookie=f"{COOKIE_NAME}=v1.stale.value")
    assert reply.status == 200


async def test_refusals_keep_the_mount_point(inner, verifier, sessions) -> None:
    app = gated(inner, verifier, sessions, anonymous=False)
    reply = await call(app, "/console/sagas", root_path="/bank", accept="text/html",
                       cookie=f"{COOKIE_NAME}=v1.stale.value")
    assert reply.header("location") == "/bank/console/login?next=/bank/console/sagas"
    assert "Path=/bank/console;" in reply.header("set-cookie")
    assert (await call(app, "/console/login", root_path="/bank")).status == 200


async def test_without_a_gate_the_console_path_is_an_ordinary_api_path(inner, verifier) -> None:
    """The gate is what keeps anonymous access out: without it /console is like /graphql."""
    app = AuthMiddleware(inner, verifier=verifier, allow_anonymous=True)
    assert (await call(app, "/console/events")).body == b"anonymous:None"


# --- through the real console routes -------------------------------------------------------------


@pytest.fixture()
def console() -> ConsoleMount:
    runtime = SimpleNamespace(topic="bank.events", settings=SimpleNamespace(), app=SimpleNamespace(name="bank"))
    return mount_console(runtime, ServingSettings(profile="dev", jwt_secret=None),
                         verifier=TokenVerifier(ServingSettings(profile="dev", jwt_secret=None)),
                         services=lambda: None, metrics=Metrics(), settings=ConsoleSettings(secret=None))


@pytest.fixture()
async def client(console: ConsoleMount):
    verifier = TokenVerifier(ServingSettings(profile="dev", jwt_secret=None))
    app = AuthMiddleware(Starlette(routes=console.routes), verifier=verifier, allow_anonymous=True,
                         sessions=console.gate)
    app = SecurityHeadersMiddleware(app, path_csp=console.csp)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as c:
        yield c
    await console.close()


async def test_the_console_routes_refuse_a_customer_and_let_an_admin_in(client) -> None:
    refused = await client.get("/console/", headers={"authorization": bearer("bob", "customer")})
    assert refused.status_code == 403
    assert "needs the admin role" in refused.text and "role is customer" in refused.text
    admitted = await client.get("/console/", headers={"authorization": bearer("alice", "admin")})
    assert admitted.status_code == 303 and admitted.headers["location"] == "/console/events"


async def test_a_state_changing_route_needs_htmx_from_this_origin(client) -> None:
    admin = {"authorization": bearer("alice", "admin")}
    plain = await client.post("/console/models/sentiment/promote", headers=admin)
    assert plain.status_code == 403 and "HX-Request header missing" in plain.text
    foreign = await client.post("/console/models/sentiment/promote",
                                headers={**admin, "hx-request": "true", "origin": "https://evil.example"})
    assert foreign.status_code == 403 and "own origin" in foreign.text
    customer = await client.post("/console/models/sentiment/promote",
                                 headers={"authorization": bearer("bob", "customer"), "hx-request": "true"})
    assert customer.status_code == 403 and "needs the admin role" in customer.text


async def test_the_login_page_opens_without_credentials_under_the_console_policy(client) -> None:
    page = await client.get("/console/login", params={"next": "https://evil.example/"})
    assert page.status_code == 200
    assert 'name="token"' in page.text and 'value="/console/"' in page.text
    assert page.headers.get_list("content-security-policy") == [CSP]
    static = await client.get("/console/static/console.css")
    assert static.status_code == 200


async def test_an_admin_login_trades_the_token_for_a_session_cookie(client) -> None:
    short_lived = token("alice", "admin", ttl_s=120)
    login = await client.post("/console/login", data={"token": short_lived, "next": "/console/sagas"},
                              headers={"origin": "https://testserver"})
    assert login.status_code == 303 and login.headers["location"] == "/console/sagas"
    set_cookie = login.headers["set-cookie"]
    assert set_cookie.startswith(f"{COOKIE_NAME}=v1.")
    attrs = {a.strip().partition("=")[0].lower(): a.strip().partition("=")[2] for a in set_cookie.split(";")[1:]}
    assert attrs["path"] == "/console" and attrs["samesite"] == "Strict"
    assert "httponly" in attrs and "secure" in attrs
    assert 0 < int(attrs["max-age"]) <= 120  # the token's expiry, not the 900 s ttl
    # the client's cookie jar sends it back on the console's paths (HTTPS, Path=/console)
    home = await client.get("/console/")
    assert home.status_code == 303 and home.headers["location"] == "/console/events"
    logout = await client.post("/console/logout")
    assert logout.status_code == 204 and "Max-Age=0" in logout.headers["set-cookie"]


@pytest.mark.parametrize(("role", "origin", "status", "says"), [
    ("customer", "https://testserver", 403, "needs the admin role"),
    ("admin", "https://evil.example", 403, "console&#39;s own page"),
])
async def test_a_login_is_refused_for_a_non_admin_or_from_another_origin(client, role, origin, status, says) -> None:
    login = await client.post("/console/login", data={"token": token("bob", role)}, headers={"origin": origin})
    assert login.status_code == status and says in login.text
    assert "set-cookie" not in login.headers


async def test_a_login_with_a_bad_token_is_refused(client) -> None:
    login = await client.post("/console/login", data={"token": "Bearer not.a.jwt"},
                              headers={"origin": "https://testserver"})
    assert login.status_code == 401 and "the token was refused" in login.text
    assert "set-cookie" not in login.headers


# --- gzip ----------------------------------------------------------------------------------------


async def test_gzip_leaves_the_excluded_stream_uncompressed() -> None:
    app = GZipMiddleware(Inner(size=4096), minimum_size=1024, exclude_paths=("/console/live/stream",))
    compressed = await call(app, "/console/events", accept_encoding="gzip")
    assert compressed.header("content-encoding") == "gzip"
    assert gzip.decompress(compressed.body).startswith(b"no principal")
    stream = await call(app, "/console/live/stream", accept_encoding="gzip")
    assert stream.header("content-encoding") is None
    assert stream.body.startswith(b"no principal") and len(stream.body) == 4096
    under_mount = await call(app, "/console/live/stream", root_path="/bank", accept_encoding="gzip")
    assert under_mount.header("content-encoding") is None


async def test_gzip_excludes_a_prefix_only_when_it_ends_with_a_slash() -> None:
    app = GZipMiddleware(Inner(size=4096), exclude_paths=("/sse/", "/exact"))
    assert (await call(app, "/sse/a/b", accept_encoding="gzip")).header("content-encoding") is None
    assert (await call(app, "/exact", accept_encoding="gzip")).header("content-encoding") is None
    assert (await call(app, "/exact/below", accept_encoding="gzip")).header("content-encoding") == "gzip"
    assert (await call(app, "/ssex", accept_encoding="gzip")).header("content-encoding") == "gzip"


# --- the content security policy per path --------------------------------------------------------


@pytest.mark.parametrize(("path", "content_type", "policy"), [
    ("/console", "text/html", CSP),
    ("/console/events", "text/html", CSP),
    ("/console/live/stream", "text/event-stream", CSP),
    ("/consoles", "application/json", "default-src 'none'; frame-ancestors 'none'"),
    ("/graphql", "application/json", "default-src 'none'; frame-ancestors 'none'"),
])
async def test_console_paths_get_the_console_policy_and_others_the_apis(path, content_type, policy) -> None:
    app = SecurityHeadersMiddleware(Inner(content_type=content_type), path_csp={"/console/": CSP})
    reply = await call(app, path)
    assert reply.all("content-security-policy") == [policy]
    assert reply.header("x-frame-options") == "DENY"


async def test_the_graphql_explorer_keeps_its_own_policy_beside_the_console() -> None:
    app = SecurityHeadersMiddleware(Inner(content_type="text/html"), path_csp={"/console": CSP})
    [explorer] = (await call(app, "/graphql")).all("content-security-policy")
    assert "https://unpkg.com" in explorer
    assert (await call(app, "/console/events", root_path="/bank")).all("content-security-policy") == [CSP]


async def test_hsts_only_when_asked_and_the_app_asks_in_production_only() -> None:
    from eventray.serving.settings import ServingSettings

    on = await call(SecurityHeadersMiddleware(Inner(content_type="application/json"), hsts=True), "/graphql")
    assert on.header("strict-transport-security") == "max-age=63072000; includeSubDomains"
    off = await call(SecurityHeadersMiddleware(Inner(content_type="application/json")), "/graphql")
    assert not off.all("strict-transport-security")
    # build_app passes ServingSettings.hsts: dev sends none (a browser would remember it for localhost)
    assert ServingSettings(profile="production", jwks_url="https://auth.example/jwks.json").hsts is True
    assert ServingSettings(profile="dev").hsts is False
