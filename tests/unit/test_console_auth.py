"""The console's own auth, piece by piece (serving/console/auth.py and settings.py): the signed
session cookie, its key, and the guards the routes apply (no services, no HTTP server)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from eventray.platform.errors import ConfigurationError
from eventray.serving.api.principal import ANONYMOUS, InvalidToken, Principal
from eventray.serving.console.auth import (
    COOKIE_NAME, CSP, ConsoleGate, ConsoleSessions, InvalidSession, action_refusal, admin_refusal, console_base,
    cookie_value, safe_next, same_origin,
)
from eventray.serving.console.settings import MIN_SECRET_LENGTH, ConsoleSettings, session_key
from eventray.serving.settings import DEV_JWT_SECRET, ServingSettings

KEY = b"k" * 32
NOW = 1_700_000_000.0
ALICE = Principal(subject="alice", role="admin")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def sessions(clock: Clock) -> ConsoleSessions:
    return ConsoleSessions(KEY, ttl_s=900, clock=clock)


def signed(claims: bytes, key: bytes = KEY) -> str:
    """A cookie value in the documented ``v1.<claims>.<signature>`` form, signed here, not by the code under test."""
    body = base64.urlsafe_b64encode(claims).rstrip(b"=").decode()
    mac = hmac.new(key, f"v1.{body}".encode(), hashlib.sha256).digest()
    return f"v1.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def http_scope(method: str = "POST", **headers: str) -> dict:
    return {"type": "http", "method": method, "path": "/console/x",
            "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}


# --- the session cookie's value ------------------------------------------------------------------


def test_a_minted_session_reads_back_as_its_principal(sessions: ConsoleSessions) -> None:
    value, expires = sessions.mint(Principal(subject="bob", role="teller"))
    assert expires == int(NOW) + 900
    assert sessions.read(value) == Principal(subject="bob", role="teller")


def test_a_changed_signature_is_refused(sessions: ConsoleSessions) -> None:
    value, _ = sessions.mint(ALICE)
    flipped = value[:-1] + ("A" if value[-1] != "A" else "B")
    with pytest.raises(InvalidSession, match="bad signature"):
        sessions.read(flipped)


def test_changed_claims_under_the_old_signature_are_refused(sessions: ConsoleSessions) -> None:
    """A customer's session edited to say admin keeps its signature, which no longer fits."""
    value, expires = sessions.mint(Principal(subject="mallory", role="customer"))
    version, _, signature = value.split(".")
    forged_claims = json.dumps({"exp": expires, "role": "admin", "sub": "mallory"}, separators=(",", ":"))
    forged_body = base64.urlsafe_b64encode(forged_claims.encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidSession, match="bad signature"):
        sessions.read(f"{version}.{forged_body}.{signature}")


def test_a_session_signed_with_another_key_is_refused(sessions: ConsoleSessions, clock: Clock) -> None:
    value, _ = ConsoleSessions(b"another-key-of-32-bytes-length!!", clock=clock).mint(ALICE)
    with pytest.raises(InvalidSession, match="bad signature"):
        sessions.read(value)


def test_a_session_is_refused_once_its_ttl_has_passed(sessions: ConsoleSessions, clock: Clock) -> None:
    value, expires = sessions.mint(ALICE)
    clock.now = expires - 1
    assert sessions.read(value) == ALICE
    clock.now = expires
    with pytest.raises(InvalidSession, match="expired"):
        sessions.read(value)


@pytest.mark.parametrize("value", [
    "", "v1", "v1.", "v1..", "v1.body.", "v1..sig", "nonsense", "v2.e30.sig", "Bearer v1.x.y",
], ids=repr)
def test_a_malformed_value_is_refused(sessions: ConsoleSessions, value: str) -> None:
    with pytest.raises(InvalidSession):
        sessions.read(value)


def test_a_value_in_another_version_is_refused_even_when_correctly_signed(sessions: ConsoleSessions) -> None:
    v1 = signed(json.dumps({"sub": "alice", "role": "admin", "exp": NOW + 60}).encode())
    assert sessions.read(v1) == ALICE
    with pytest.raises(InvalidSession, match="malformed"):
        sessions.read("v2" + v1[2:])


@pytest.mark.parametrize("claims", [
    b"not json", b"\xff\xfe", b"[]", b"42", b'{"role": "admin", "exp": 1800000000}',
    b'{"sub": "alice", "exp": 1800000000}', b'{"sub": "alice", "role": "admin"}',
    b'{"sub": "alice", "role": "admin", "exp": "soon"}',
], ids=repr)
def test_correctly_signed_but_malformed_claims_are_refused(sessions: ConsoleSessions, claims: bytes) -> None:
    with pytest.raises(InvalidSession, match="malformed console session claims"):
        sessions.read(signed(claims))


@pytest.mark.parametrize("role", ["root", "anonymous", "ADMIN", None])
def test_a_correctly_signed_session_naming_an_unknown_role_is_refused(sessions: ConsoleSessions,
                                                                      role: str | None) -> None:
    with pytest.raises(InvalidSession, match="unknown role"):
        sessions.read(signed(json.dumps({"sub": "alice", "role": role, "exp": NOW + 60}).encode()))


def test_a_signature_with_non_ascii_text_is_refused_as_an_invalid_session(sessions: ConsoleSessions) -> None:
    # header() decodes latin-1, so a cookie byte 0xE9 arrives as "é"
    with pytest.raises(InvalidSession):
        sessions.read("v1.e30.\xe9")


def test_invalid_session_is_an_invalid_token_for_the_middleware() -> None:
    assert issubclass(InvalidSession, InvalidToken)


@pytest.mark.parametrize("principal", [ANONYMOUS, Principal(subject="x", role="root"),
                                       Principal(subject=None, role="admin")])
def test_only_an_authenticated_principal_in_a_known_role_gets_a_session(sessions: ConsoleSessions,
                                                                        principal: Principal) -> None:
    with pytest.raises(InvalidSession):
        sessions.mint(principal)


def test_the_session_never_outlives_the_token_it_came_from(sessions: ConsoleSessions, clock: Clock) -> None:
    token_expiry = NOW + 120.7
    value, expires = sessions.mint(ALICE, not_after=token_expiry)
    assert expires == int(token_expiry)
    clock.now = NOW + 119
    assert sessions.read(value) == ALICE
    clock.now = NOW + 120  # long before the 900 s ttl
    with pytest.raises(InvalidSession, match="expired"):
        sessions.read(value)


def test_a_token_that_outlives_the_ttl_does_not_stretch_the_session(sessions: ConsoleSessions) -> None:
    _, expires = sessions.mint(ALICE, not_after=NOW + 86_400)
    assert expires == int(NOW) + 900


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        ConsoleSessions(b"short")


# --- the Set-Cookie header -----------------------------------------------------------------------


def cookie_attributes(set_cookie: str) -> tuple[str, dict[str, str]]:
    """The ``name=value`` pair and the attributes (lowercased names) of a ``Set-Cookie`` value."""
    pair, *attrs = [part.strip() for part in set_cookie.split(";")]
    parsed = {}
    for attr in attrs:
        name, _, value = attr.partition("=")
        parsed[name.lower()] = value
    return pair, parsed


@pytest.mark.parametrize("base", ["/console", "/bank/console"])
def test_the_cookie_is_httponly_secure_strict_and_scoped_to_the_console(sessions: ConsoleSessions,
                                                                        clock: Clock, base: str) -> None:
    value, expires = sessions.mint(ALICE)
    clock.now = NOW + 100
    pair, attrs = cookie_attributes(sessions.set_cookie(value, path=base, expires=expires))
    assert pair == f"{COOKIE_NAME}={value}"
    assert attrs["path"] == base
    assert attrs["max-age"] == "800"
    assert attrs["samesite"] == "Strict"
    assert "httponly" in attrs and "secure" in attrs
    assert "domain" not in attrs


def test_an_expired_session_gets_no_negative_max_age(sessions: ConsoleSessions, clock: Clock) -> None:
    value, expires = sessions.mint(ALICE)
    clock.now = expires + 50
    _, attrs = cookie_attributes(sessions.set_cookie(value, path="/console", expires=expires))
    assert attrs["max-age"] == "0"


def test_clearing_the_cookie_empties_it_on_the_same_path_with_the_same_flags() -> None:
    pair, attrs = cookie_attributes(ConsoleSessions.clear_cookie(path="/bank/console"))
    assert pair == f"{COOKIE_NAME}="
    assert attrs["path"] == "/bank/console"
    assert attrs["max-age"] == "0"
    assert attrs["samesite"] == "Strict" and "httponly" in attrs and "secure" in attrs


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    (f"{COOKIE_NAME}=abc", "abc"),
    (f"theme=dark; {COOKIE_NAME}=v1.x.y; other=1", "v1.x.y"),
    (f"{COOKIE_NAME}=", None),
    (f"x{COOKIE_NAME}=abc", None),
])
def test_the_cookie_value_is_read_from_the_cookie_header(header: str | None, expected: str | None) -> None:
    scope = http_scope("GET") if header is None else http_scope("GET", cookie=header)
    assert cookie_value(scope) == expected


# --- the key -------------------------------------------------------------------------------------


def production(**kwargs) -> ServingSettings:
    return ServingSettings(profile="production", allow_anonymous=False,
                           jwt_public_key_file=Path("never-read.pem"), **kwargs)


def test_production_refuses_a_console_without_a_secret() -> None:
    with pytest.raises(ConfigurationError, match="EVENTRAY_CONSOLE_SECRET"):
        session_key(ConsoleSettings(secret=None), production())


def test_production_refuses_a_short_secret() -> None:
    with pytest.raises(ConfigurationError, match=f"at least {MIN_SECRET_LENGTH} characters"):
        session_key(ConsoleSettings(secret="s" * (MIN_SECRET_LENGTH - 1)), production())


def test_production_uses_a_long_enough_secret_as_it_is() -> None:
    secret = "s" * MIN_SECRET_LENGTH
    assert session_key(ConsoleSettings(secret=secret), production()) == secret.encode()


def test_dev_derives_a_key_from_the_token_secret_that_is_not_the_token_secret() -> None:
    dev = ServingSettings(profile="dev", jwt_secret=None)
    key = session_key(ConsoleSettings(secret=None), dev)
    assert key == session_key(ConsoleSettings(secret=None), ServingSettings(profile="dev", jwt_secret=None))
    assert len(key) >= 16 and DEV_JWT_SECRET.encode() not in key
    other = session_key(ConsoleSettings(secret=None), ServingSettings(profile="dev", jwt_secret="another-secret"))
    assert other != key
    ConsoleSessions(key)  # long enough for the signer


def test_dev_takes_a_given_secret_over_the_derived_key() -> None:
    assert session_key(ConsoleSettings(secret="short"), ServingSettings(profile="dev")) == b"short"


@pytest.mark.parametrize("ttl", [0, 59, 3601])
def test_the_session_ttl_is_bounded(ttl: int) -> None:
    with pytest.raises(ValidationError):
        ConsoleSettings(session_ttl_s=ttl)


def test_the_secret_is_kept_out_of_the_settings_repr() -> None:
    assert "hunter2-hunter2" not in repr(ConsoleSettings(secret="hunter2-hunter2"))


# --- who may see the console, and which actions count --------------------------------------------


@pytest.mark.parametrize(("principal", "says"), [
    (None, "log in"),
    (ANONYMOUS, "log in"),
    (Principal(subject="bob", role="customer"), "role is customer"),
    (Principal(subject="tess", role="teller"), "role is teller"),
])
def test_only_admin_may_see_the_console(principal: Principal | None, says: str) -> None:
    reason = admin_refusal(principal)
    assert reason is not None and says in reason


def test_admin_passes_the_admin_check() -> None:
    assert admin_refusal(ALICE) is None


def test_an_htmx_post_from_the_same_origin_is_an_action() -> None:
    assert action_refusal(http_scope(hx_request="true", host="testserver", origin="https://testserver")) is None
    assert action_refusal(http_scope(hx_request="True", host="testserver")) is None


@pytest.mark.parametrize(("scope", "says"), [
    (http_scope("GET", hx_request="true", host="testserver"), "is a POST"),
    (http_scope(host="testserver", origin="https://testserver"), "HX-Request header missing"),
    (http_scope(hx_request="false", host="testserver"), "HX-Request header missing"),
    (http_scope(hx_request="true", host="testserver", origin="https://evil.example"), "own origin"),
    (http_scope(hx_request="true", host="testserver", origin="null"), "own origin"),
    (http_scope(hx_request="true", host="testserver", sec_fetch_site="cross-site"), "own origin"),
    (http_scope(hx_request="true", host="testserver", sec_fetch_site="same-site"), "own origin"),
], ids=["get", "no-hx", "hx-false", "other-origin", "null-origin", "cross-site-fetch", "same-site-fetch"])
def test_an_action_that_is_not_an_htmx_post_from_this_origin_is_refused(scope: dict, says: str) -> None:
    reason = action_refusal(scope)
    assert reason is not None and says in reason


def test_a_null_origin_is_this_origin_only_when_the_browser_says_same_origin() -> None:
    # under Referrer-Policy: no-referrer a browser's own form POST carries Origin: null
    assert same_origin(http_scope(host="127.0.0.1:8000", origin="null", sec_fetch_site="same-origin"))
    assert not same_origin(http_scope(host="127.0.0.1:8000", origin="null", sec_fetch_site="cross-site"))
    assert not same_origin(http_scope(host="127.0.0.1:8000", origin="null"))  # a sandboxed frame


def test_an_origin_on_another_port_is_another_origin() -> None:
    assert same_origin(http_scope(host="127.0.0.1:8000", origin="http://127.0.0.1:8000"))
    assert not same_origin(http_scope(host="127.0.0.1:8000", origin="http://127.0.0.1:9000"))
    assert not same_origin(http_scope(origin="http://127.0.0.1:8000"))  # no Host to compare with


@pytest.mark.parametrize("target", [
    None, "", "https://evil.example/console/events", "//evil.example/console/events", "///evil.example",
    "javascript:alert(1)", "/graphql", "/consoleevil", "/console", "/console/../graphql",
    "/console/events/../../graphql", "/console\\@evil.example", "/console/\\evil.example",
    "/console/login", "/console/login?next=https://evil.example", "/console/static/console.js",
    "/console/%2e%2e/graphql", "/console/%2E%2E/graphql",
], ids=repr)
def test_a_next_target_off_the_console_goes_to_its_home(target: str | None) -> None:
    assert safe_next(target, "/console") == "/console/"


@pytest.mark.parametrize(("target", "base"), [
    ("/console/events", "/console"),
    ("/console/events?type=AccountOpened&id=a-1", "/console"),
    ("/bank/console/sagas", "/bank/console"),
])
def test_a_next_target_on_the_console_is_kept(target: str, base: str) -> None:
    assert safe_next(target, base) == target


def test_a_next_target_of_the_console_under_another_mount_is_not_kept() -> None:
    assert safe_next("/console/events", "/bank/console") == "/bank/console/"


@pytest.mark.parametrize(("root_path", "base"), [
    ("", "/console"), ("/bank", "/bank/console"), ("/bank/", "/bank/console"),
])
def test_the_console_base_is_below_the_mount_point(root_path: str, base: str) -> None:
    assert console_base({"type": "http", "root_path": root_path}) == base


@pytest.mark.parametrize(("path", "covered", "public"), [
    ("/console", True, False),
    ("/console/", True, False),
    ("/console/events", True, False),
    ("/console/login", True, True),
    ("/console/loginx", True, False),
    ("/console/login/x", True, False),
    ("/console/static/console.css", True, True),
    ("/console/static", True, False),
    ("/consoles", False, False),
    ("/graphql", False, False),
])
def test_the_gate_covers_the_console_and_opens_only_login_and_static(path: str, covered: bool,
                                                                     public: bool) -> None:
    assert ConsoleGate.covers(path) is covered
    assert ConsoleGate.is_public(path) is public


def test_the_console_policy_allows_no_inline_script_nor_a_foreign_origin() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP and "http" not in CSP
