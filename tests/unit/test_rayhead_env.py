"""The Serve flags a dev head starts with: HAProxy on the HTTP port unless the ingress is HTTPS."""

from __future__ import annotations

from pathlib import Path

from eventray.platform.devstack import rayhead
from eventray.platform.settings import Settings

#: Serve puts the node's id (56 hex characters) below the HAProxy directory
_NODE_ID = 56
#: the longest admin socket path HAProxy 2.8 accepts
_SOCKET_MAX = 97


def test_plain_http_heads_run_haproxy_with_files_and_ports_of_their_own(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("EVENTRAY_HTTPS", raising=False)
    dev = Settings(home=tmp_path / "dev")
    other = Settings(home=tmp_path / "other", ray_port=dev.ray_port + 1000)
    env, env_other = rayhead.serve_env(dev), rayhead.serve_env(other)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert all(env[k] == v for k, v in rayhead.SERVE_ENV.items())
    ports = {int(env[k]) for k in rayhead.HAPROXY_PORT_OFFSETS}
    assert len(ports) == len(rayhead.HAPROXY_PORT_OFFSETS)
    assert ports.isdisjoint(int(env_other[k]) for k in rayhead.HAPROXY_PORT_OFFSETS)
    assert env["RAY_SERVE_HAPROXY_SOCKET_PATH"] != env_other["RAY_SERVE_HAPROXY_SOCKET_PATH"]
    socket = Path(env["RAY_SERVE_HAPROXY_SOCKET_PATH"])
    assert len(str(socket.parent)) + 1 + _NODE_ID + 1 + len(socket.name) <= _SOCKET_MAX


def test_an_https_ingress_keeps_serves_proxy(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EVENTRAY_HTTPS", "1")
    env = rayhead.serve_env(Settings(home=tmp_path))
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in env
    assert env == rayhead.SERVE_ENV
