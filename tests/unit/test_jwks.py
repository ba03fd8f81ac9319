"""The OAuth2 resource server: keys from a JWKS endpoint this test serves, rotated mid-run.

Tokens are chosen by ``kid``; an unknown ``kid`` refetches the set (rate-limited); a withdrawn
key's tokens stop verifying, even ones verified before; issuer, audience and clock skew are
checked; scopes map to roles. The endpoint is a local HTTP server of the test's own.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from eventray.platform.devstack import certs
from eventray.platform.errors import ConfigurationError
from eventray.serving.api.principal import InvalidToken, TokenVerifier
from eventray.serving.settings import ServingSettings

ISSUER = "https://auth.example"


class JwksServer:
    """Serves ``/jwks.json`` with the public halves of ``self.keys`` (kid -> private key)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.keys: dict[str, Any] = {}
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests += 1
                body = json.dumps({"keys": [
                    {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key())), "kid": kid, "use": "sig",
                     "alg": "RS256"} for kid, k in outer.keys.items()]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, kid: str) -> Any:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.keys[kid]


@pytest.fixture()
def server() -> Iterator[JwksServer]:
    s = JwksServer()
    yield s
    s.httpd.shutdown()


def token(key: Any, kid: str, *, ttl: int = 600, **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "u1", "aud": "eventray", "iss": ISSUER, "iat": now, "exp": now + ttl, "role": "teller", **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="RS256", headers={"kid": kid})


def verifier(server: JwksServer, **kw: Any) -> TokenVerifier:
    settings = {"profile": "dev", "jwks_url": server.url, "jwt_issuer": ISSUER, "jwks_refresh_min_s": 0.0, **kw}
    return TokenVerifier(ServingSettings(**settings))


def test_keys_by_kid_and_rotation_without_a_restart(server: JwksServer) -> None:
    k1 = server.add("k1")
    v = verifier(server)
    old = token(k1, "k1")
    assert v.verify(old).subject == "u1" and server.requests == 1
    assert v.verify(old).subject == "u1" and server.requests == 1  # cached: no fetch per request
    # the server rotates: k2 is added, k1 withdrawn
    k2 = server.add("k2")
    del server.keys["k1"]
    fresh = token(k2, "k2")
    assert v.verify(fresh).role == "teller" and server.requests == 2  # the unknown kid fetched the new set
    with pytest.raises(InvalidToken, match="unknown key id"):
        v.verify(old)  # verified before, but its key was withdrawn
    with pytest.raises(InvalidToken):
        v.verify(token(k1, "k2"))  # signed with the old key under the new kid


def test_unknown_kids_refetch_at_most_once_per_interval(server: JwksServer) -> None:
    k1 = server.add("k1")
    v = verifier(server, jwks_refresh_min_s=60.0)
    v.verify(token(k1, "k1"))
    for i in range(20):
        with pytest.raises(InvalidToken):
            v.verify(token(k1, f"made-up-{i}"))
    assert server.requests == 1  # the first fetch was just now: made-up kids cannot make it refetch


def test_issuer_audience_and_bounded_clock_skew(server: JwksServer) -> None:
    k = server.add("k")
    v = verifier(server, jwt_leeway_s=30)
    assert v.verify(token(k, "k", ttl=-20)).subject == "u1"  # within the skew
    for bad in (token(k, "k", ttl=-40), token(k, "k", iss="https://evil.example"),
                token(k, "k", aud="someone-else"), token(k, "k", iss=None)):
        with pytest.raises(InvalidToken):
            v.verify(bad)
    with pytest.raises(ValueError):
        ServingSettings(jwt_leeway_s=3600)  # the skew is bounded


def test_scopes_map_to_roles(server: JwksServer) -> None:
    k = server.add("k")
    v = verifier(server)
    assert v.verify(token(k, "k", role=None, scope="openid eventray:customer")).role == "customer"
    assert v.verify(token(k, "k", role=None, sub="u2", scp=["eventray:customer", "eventray:admin"])).role == "admin"
    with pytest.raises(InvalidToken, match="role"):
        v.verify(token(k, "k", role=None, sub="u3", scope="openid profile"))


def test_an_unreachable_endpoint_refuses_tokens_but_keeps_serving(server: JwksServer) -> None:
    k = server.add("k")
    server.httpd.shutdown()
    server.httpd.server_close()
    v = verifier(server, jwks_timeout_s=0.5)
    with pytest.raises(InvalidToken, match="no signing keys could be fetched"):
        v.verify(token(k, "k"))


def test_an_https_endpoint_is_trusted_through_the_jwks_ca_file_only(tmp_path) -> None:
    """An authorization server whose certificate a private CA signed: EVENTRAY_JWKS_CA_FILE trusts it."""
    ca = certs.new_ca("an authorization server's CA")
    leaf = certs.issue(ca, "auth", server=True, hosts=["127.0.0.1"])
    certs.write_pem(tmp_path / "ca.crt", ca.cert_pem(), private=False)
    certs.write_pem(tmp_path / "auth.crt", leaf.cert_pem(), private=False)
    certs.write_pem(tmp_path / "auth.key", leaf.key_pem(), private=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "auth.crt", tmp_path / "auth.key")
    server = JwksServer(tls=context)
    try:
        k = server.add("k")
        assert server.url.startswith("https://")
        assert verifier(server, jwks_ca_file=tmp_path / "ca.crt").verify(token(k, "k")).subject == "u1"
        assert server.requests == 1
        with pytest.raises(InvalidToken, match="no signing keys could be fetched"):
            verifier(server, jwks_timeout_s=2.0).verify(token(k, "k"))  # the system's trust store: refused
        assert server.requests == 1  # the handshake failed before any request was read
    finally:
        server.httpd.shutdown()
    with pytest.raises(ConfigurationError, match="EVENTRAY_JWKS_CA_FILE"):
        ServingSettings(jwks_url=server.url, jwks_ca_file=tmp_path / "none.crt")


def test_production_refuses_each_unsafe_setting() -> None:
    base = {"profile": "production", "jwks_url": "https://auth.example/jwks.json"}
    assert ServingSettings(**base).introspection_on is False and ServingSettings(**base).suggestions_on is False
    for unsafe, setting in (({"allow_anonymous": True}, "EVENTRAY_ALLOW_ANONYMOUS"),
                            ({"jwt_secret": "s" * 40}, "EVENTRAY_JWT_SECRET"),
                            ({"introspection": True}, "EVENTRAY_INTROSPECTION"),
                            ({"jwks_url": "http://auth.example/jwks.json"}, "EVENTRAY_JWKS_URL"),
                            ({"jwks_url": None}, "EVENTRAY_JWKS_URL")):
        with pytest.raises(ConfigurationError, match=setting):
            ServingSettings(**{**base, **unsafe})


def test_production_refuses_plaintext_kafka_and_postgres(tmp_path) -> None:
    from eventray.platform.settings import Settings

    prod = ServingSettings(profile="production", jwks_url="https://auth.example/jwks.json")
    with pytest.raises(ConfigurationError, match="EVENTRAY_TLS=true"):
        prod.check_transport(Settings(home=tmp_path, tls=False))
    url = "postgresql://eventray@db.example:5432/eventray?sslmode=require"
    with pytest.raises(ConfigurationError, match="sslmode=require"):
        prod.check_transport(Settings(home=tmp_path, tls=True, database_url=url))
    with pytest.raises(ConfigurationError, match="EVENTRAY_HTTPS=true"):  # the ingress too
        prod.check_transport(Settings(home=tmp_path, tls=True, database_url=url.split("?")[0]))
    prod.model_copy(update={"https": True}).check_transport(
        Settings(home=tmp_path, tls=True, database_url=url.split("?")[0]))
    ServingSettings(profile="dev").check_transport(Settings(home=tmp_path, tls=False))  # dev allows it


def test_the_ingress_certificate_is_the_dev_ca_leaf_unless_both_files_are_given(tmp_path) -> None:
    import ssl

    from eventray.platform.settings import Settings

    settings = Settings(home=tmp_path)
    assert ServingSettings().ingress_tls(settings) is None  # https off: plain HTTP, nothing issued
    assert not settings.tls_dir.exists()
    cert, key = ServingSettings(https=True).ingress_tls(settings)
    assert (cert, key) == (settings.tls_dir / "ingress.crt", settings.tls_dir / "ingress.key")
    ctx = ssl.create_default_context(cafile=str(settings.tls_dir / "ca.crt"))
    ctx.load_cert_chain(cert, key)  # the key matches the certificate
    with pytest.raises(ConfigurationError, match="set both EVENTRAY_HTTPS_CERT_FILE and EVENTRAY_HTTPS_KEY_FILE"):
        ServingSettings(https=True, https_cert_file=cert).ingress_tls(settings)
    with pytest.raises(ConfigurationError, match="EVENTRAY_HTTPS_KEY_FILE=.*no such file"):
        ServingSettings(https=True, https_cert_file=cert, https_key_file=tmp_path / "none.key").ingress_tls(settings)
    own = ServingSettings(https=True, https_cert_file=cert, https_key_file=key)
    assert own.ingress_tls(settings) == (cert, key)


def test_an_unsigned_token_is_refused_whatever_it_claims() -> None:
    verifier = TokenVerifier(ServingSettings(profile="dev"))
    forged = jwt.encode({"sub": "mallory", "role": "admin", "aud": "eventray", "exp": int(time.time()) + 600},
                        key=None, algorithm="none")
    with pytest.raises(InvalidToken, match="algorithm 'none' is not accepted"):
        verifier.verify(forged)


def test_production_accepts_only_known_persisted_queries_once_a_list_is_given(tmp_path) -> None:
    known = tmp_path / "persisted.json"
    known.write_text("{}")
    prod = {"profile": "production", "jwks_url": "https://auth.example/jwks.json"}
    assert ServingSettings(**prod, persisted_queries_file=known).only_persisted_queries is True
    assert ServingSettings(**prod).only_persisted_queries is False  # no list: nothing to allow
    assert ServingSettings(profile="dev", persisted_queries_file=known).only_persisted_queries is False
    assert ServingSettings(**prod, persisted_queries_file=known, persisted_queries_only=False).only_persisted_queries is False
