"""docker-compose.yml runs the same broker and database settings as `eventray dev up`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from eventray.platform.devstack import broker_properties
from eventray.platform.devstack.kafka import HEAP_OPTS, JIT_OPTS
from eventray.platform.devstack.postgres import SERVER_CONF
from eventray.platform.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
#: host-specific server settings that only the dev stack sets (the container binds its own)
DEV_ONLY_SERVER_CONF = {"listen_addresses", "unix_socket_directories"}


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> Settings:
    import os

    for name in list(os.environ):
        if name.startswith("EVENTRAY_"):
            monkeypatch.delenv(name)
    return Settings(tls=False)  # the compose file is the plaintext stack (EVENTRAY_TLS=false)


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _kafka_env_to_properties(env: dict[str, str]) -> dict[str, str]:
    # the apache/kafka image's rule: KAFKA_A_B -> a.b, "__" -> "-", "___" -> "_"
    props = {}
    for name, value in env.items():
        if name.startswith("KAFKA_") and name not in ("KAFKA_HEAP_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS"):
            key = name[len("KAFKA_"):].lower().replace("___", "\0").replace("__", "-")
            props[key.replace("_", ".").replace("\0", "_")] = str(value)
    return props


def test_broker_properties_match(services: dict, defaults: Settings) -> None:
    env = services["kafka"]["environment"]
    expected = broker_properties(defaults, log_dir=env["KAFKA_LOG_DIRS"], listen_host="0.0.0.0")
    assert _kafka_env_to_properties(env) == expected


def test_broker_heap_and_port_match(services: dict, defaults: Settings) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == f"apache/kafka:{defaults.kafka_version}"
    assert kafka["environment"]["KAFKA_HEAP_OPTS"] == HEAP_OPTS
    assert kafka["environment"]["KAFKA_JVM_PERFORMANCE_OPTS"].split()[0] == JIT_OPTS
    assert f"{defaults.kafka_port}:{defaults.kafka_port}" in kafka["ports"]


def test_postgres_matches(services: dict, defaults: Settings) -> None:
    pg = services["postgres"]
    assert pg["image"] == "postgres:15"
    assert f"{defaults.postgres_port}:5432" in pg["ports"]
    assert pg["environment"]["POSTGRES_USER"] == defaults.postgres_user
    assert pg["environment"]["POSTGRES_DB"] == defaults.postgres_db
    assert pg["environment"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    args = pg["command"][1:]
    flags = dict(a.split("=", 1) for a in args[1::2])
    assert all(f == "-c" for f in args[0::2])
    expected = {k: v for k, v in SERVER_CONF.items() if k not in DEV_ONLY_SERVER_CONF}
    assert flags == expected
