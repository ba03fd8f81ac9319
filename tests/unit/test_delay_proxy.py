"""The delay proxy in front of the dev broker: ports, the broker's listeners, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventray.platform.chaos import faults
from eventray.platform.devstack import broker_properties, toxiproxy
from eventray.platform.errors import StackError
from eventray.platform.settings import Settings


def test_behind_the_proxy_the_broker_listens_two_ports_up_and_advertises_the_proxy(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, kafka_port=29092, kafka_controller_port=29093, kafka_delay_proxy=True)
    props = broker_properties(s, log_dir=tmp_path)
    assert props["listeners"] == "SSL://127.0.0.1:29094,CONTROLLER://127.0.0.1:29093"  # TLS is on by default
    assert props["advertised.listeners"] == "SSL://127.0.0.1:29092"  # every client goes through the proxy
    assert s.kafka_address == "127.0.0.1:29092"
    assert (toxiproxy.broker_port(s), toxiproxy.api_port(s)) == (29094, 29095)


def test_without_the_proxy_the_broker_listens_on_the_client_port(tmp_path: Path) -> None:
    props = broker_properties(Settings(home=tmp_path, kafka_port=29092, tls=False), log_dir=tmp_path)
    assert props["listeners"].startswith("PLAINTEXT://127.0.0.1:29092,")
    props = broker_properties(Settings(home=tmp_path, kafka_port=29092), log_dir=tmp_path)
    assert props["listeners"].startswith("SSL://127.0.0.1:29092,")


def test_delay_is_refused_on_a_proxy_this_stack_did_not_start(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, kafka_delay_proxy=True)
    with pytest.raises(StackError, match="no Toxiproxy started by this stack"):
        toxiproxy.set_delay(s, 100)


def test_delay_is_unavailable_without_a_namespace_or_a_proxy(tmp_path: Path) -> None:
    why = faults.delay_available(Settings(home=tmp_path))
    assert why is not None and "EVENTRAY_KAFKA_DELAY_PROXY" in why and "EVENTRAY_KAFKA_NETNS_IP" in why


def test_behind_the_postgres_proxy_clients_connect_two_ports_up(tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    from eventray.platform.devstack.state import effective_settings

    plain = effective_settings(Settings(home=tmp_path, postgres_port=29432))
    assert urlsplit(plain.database_url).port == 29432
    proxied = effective_settings(Settings(home=tmp_path, postgres_port=29432, postgres_proxy=True))
    assert urlsplit(proxied.database_url).port == toxiproxy.postgres_proxy_port(proxied) == 29434
    assert proxied.postgres_port == 29432  # the server's own port, for the stack's own connections


def test_partition_is_refused_without_the_stacks_own_postgres_or_proxy(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="external"):
        faults.partition_postgres(Settings(home=tmp_path, database_url="postgresql://x@db.example/x"), 1)
    with pytest.raises(StackError, match="no PostgreSQL started by this stack"):
        faults.partition_postgres(Settings(home=tmp_path, postgres_proxy=True), 1)
    with pytest.raises(StackError, match="no Toxiproxy started by this stack"):
        toxiproxy.set_enabled(Settings(home=tmp_path, postgres_proxy=True), False, proxy=toxiproxy.POSTGRES)
