"""The plain-HTTP redirect port of an HTTPS ingress (serving/redirect.py) and its settings."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from eventray.platform.errors import ConfigurationError
from eventray.serving.redirect import redirect_app
from eventray.serving.settings import ServingSettings


@pytest.fixture
def client() -> TestClient:
    return TestClient(redirect_app(8443), base_url="http://bank.example:8080", follow_redirects=False)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_read_is_sent_to_the_same_path_on_https(client: TestClient, method: str) -> None:
    r = client.request(method, "/graphql?query=%7Bme%7D")
    assert r.status_code == 308
    assert r.headers["location"] == "https://bank.example:8443/graphql?query=%7Bme%7D"
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_anything_with_a_body_is_refused_with_the_https_address(client: TestClient, method: str) -> None:
    r = client.request(method, "/graphql", content=b'{"query":"mutation { x }"}')
    assert r.status_code == 403
    assert "https://bank.example:8443/graphql" in r.text and "location" not in r.headers


def test_a_websocket_is_closed_as_a_policy_violation(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as e, client.websocket_connect("/graphql"):
        pass
    assert e.value.code == 1008


def test_the_redirect_port_needs_https_and_a_port_of_its_own() -> None:
    with pytest.raises(ConfigurationError, match="EVENTRAY_HTTPS=true"):
        ServingSettings(https=False, http_redirect_port=8080)
    with pytest.raises(ConfigurationError, match="another one"):
        ServingSettings(https=True, http_port=8443, http_redirect_port=8443)
    assert ServingSettings(https=True, http_port=8443, http_redirect_port=8080).http_redirect_port == 8080
