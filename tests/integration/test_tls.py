"""Mutual TLS on a stack of its own: Kafka and PostgreSQL started by the dev stack with EVENTRAY_TLS.

The stack lives in its own home (``EVENTRAY_TLS_TEST_HOME``, default /tmp/eventray-tls-test)
with its own ports (``EVENTRAY_TLS_TEST_PORT_BASE``, default 31000: Kafka 31092, its
controller 31093, PostgreSQL 31432), clear of the shared dev stack (19092, 55432) and the
chaos stack (29000 on). Ray is not started (its address is set, so the dev stack leaves it
alone). The module brings the stack up once and takes it down, data purged, at the end.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import ssl
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography import x509

from eventray.platform import devstack
from eventray.platform.devstack import certs
from eventray.platform.devstack.stack import rotate_certificates
from eventray.platform.errors import ConfigurationError, ServiceUnavailable
from eventray.platform.eventlog import describe_partitions, ensure_topic
from eventray.platform.eventlog.reader import make_reader
from eventray.platform.eventlog.writer import KAFKA_CLIENTS, make_writer
from eventray.platform.migrations import migrate
from eventray.platform.settings import Settings, with_postgres_tls
from eventray.platform.tls import TLSFiles

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOME = Path(os.environ.get("EVENTRAY_TLS_TEST_HOME", "/tmp/eventray-tls-test"))
BASE = int(os.environ.get("EVENTRAY_TLS_TEST_PORT_BASE", "31000"))
#: how long a refused Kafka client is given before the adapter gives up
REFUSED_TIMEOUT_S = 4.0


def _configured() -> Settings:
    """The stack's configured settings (no addresses: the dev stack provides them)."""
    return Settings(home=HOME, tls=True, kafka_port=BASE + 92, kafka_controller_port=BASE + 93,
                    postgres_port=BASE + 432, ray_address="127.0.0.1:1", partitions=2,
                    kafka_bootstrap=None, database_url=None, kafka_delay_proxy=False, kafka_netns_ip=None)


@pytest.fixture(scope="module")
def tls_stack() -> Iterator[Settings]:
    """The effective settings (addresses filled in) of the TLS stack, up for the module."""
    configured = _configured()
    devstack.down(configured, purge=True)  # a run that died left its stack: start clean
    shutil.rmtree(configured.tls_dir, ignore_errors=True)
    try:
        report = devstack.up(configured)
        assert report["postgres"].state == "running" and report["kafka"].state == "running"
        assert report["ray"].state == "external"
        yield report.settings
    finally:
        devstack.down(configured, purge=True)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A client named ``eventray`` whose certificate comes from another CA (it trusts the real one)."""
    d = tmp_path_factory.mktemp("foreign")
    ca = certs.new_ca("some other CA")
    leaf = certs.issue(ca, "eventray", server=False)
    certs.write_pem(d / "ca.crt", ca.cert_pem(), private=False)
    certs.write_pem(d / "eventray.crt", leaf.cert_pem(), private=False)
    certs.write_pem(d / "eventray.key", leaf.key_pem(), private=True)
    return TLSFiles(HOME / "tls" / "ca.crt", d / "eventray.crt", d / "eventray.key")


@pytest.fixture(scope="module")
def expired(tls_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A client named ``eventray`` from the dev CA whose certificate expired yesterday."""
    d = tmp_path_factory.mktemp("expired")
    ca = certs.load_ca(tls_stack.tls_dir)
    assert ca is not None
    now = dt.datetime.now(dt.timezone.utc)
    leaf = certs.issue(ca, "eventray", server=False, not_before=now - dt.timedelta(days=30),
                       not_after=now - dt.timedelta(days=1))
    certs.write_pem(d / "eventray.crt", leaf.cert_pem(), private=False)
    certs.write_pem(d / "eventray.key", leaf.key_pem(), private=True)
    return TLSFiles(tls_stack.tls_dir / "ca.crt", d / "eventray.crt", d / "eventray.key")


def _round_trip(s: Settings, client: str) -> list[bytes]:
    tls = s.tls_files()
    topic = f"test-tls-{client}-{uuid.uuid4().hex[:8]}"
    assert ensure_topic(s.kafka_address, topic, 1, replication_factor=1, tls=tls)
    writer = make_writer(client, s.kafka_address, topic, 0, f"tx-{topic}", commit_timeout_s=20, tls=tls)
    values = [f"{client}-{i}".encode() for i in range(20)]
    try:
        writer.init()
        assert writer.append_batch([(b"agg-1", v) for v in values]) == list(range(20))
    finally:
        writer.close(timeout_s=2)
    with make_reader(client, s.kafka_address, topic, 0, stall_timeout_s=10, tls=tls) as reader:
        return [v for batch in reader.read(0) for _, _, v in batch]


@pytest.mark.parametrize("client", KAFKA_CLIENTS)
def test_an_eventray_writer_and_reader_round_trip_over_mutual_tls(tls_stack: Settings, client: str) -> None:
    assert _round_trip(tls_stack, client) == [f"{client}-{i}".encode() for i in range(20)]


def test_postgres_connects_with_verify_full_and_the_client_certificate(tls_stack: Settings) -> None:
    assert "sslmode=verify-full" in tls_stack.dsn
    with psycopg.connect(tls_stack.dsn, connect_timeout=5) as conn:
        ssl_on, version, client_dn = conn.execute(
            "SELECT ssl, version, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert conn.execute("SELECT count(*) FROM eventray_migrations").fetchone()[0] >= 1  # dev up migrated
        assert conn.info.user == "eventray"
    assert ssl_on and version in ("TLSv1.2", "TLSv1.3") and client_dn.endswith("CN=eventray")


def test_a_plaintext_kafka_client_is_refused(tls_stack: Settings) -> None:
    with pytest.raises(ServiceUnavailable):
        describe_partitions(tls_stack.kafka_address, "eventray.events", timeout_s=REFUSED_TIMEOUT_S, tls=None)
    # the same call with the client's certificate is answered (the topic does not exist: None)
    assert describe_partitions(tls_stack.kafka_address, "no-such-topic", tls=tls_stack.tls_files()) is None


def _plain_url(s: Settings) -> str:
    assert s.database_url is not None
    return s.database_url.split("?", 1)[0]


def test_a_plaintext_or_certificateless_postgres_client_is_refused(tls_stack: Settings) -> None:
    with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry .* no encryption"):
        psycopg.connect(_plain_url(tls_stack) + "?sslmode=disable", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="requires a valid client certificate"):
        psycopg.connect(_plain_url(tls_stack) + f"?sslmode=verify-full&sslrootcert={tls_stack.tls_dir}/ca.crt",
                        connect_timeout=5)


@pytest.mark.parametrize("who", ["foreign", "expired"])
def test_a_client_certificate_from_another_ca_or_expired_is_refused_by_kafka(
        tls_stack: Settings, who: str, request: pytest.FixtureRequest) -> None:
    tls: TLSFiles = request.getfixturevalue(who)
    # the broker's verdict at the TLS level: an alert, not an answer
    assert _kafka_handshake_refused(tls_stack, tls)
    assert not _kafka_handshake_refused(tls_stack, tls_stack.tls_files())
    # at the adapter edge: a permanent configuration error that names the settings, not "unreachable"
    with pytest.raises(ConfigurationError, match="refused this client's certificate.*EVENTRAY_TLS_CERT_FILE"):
        describe_partitions(tls_stack.kafka_address, "no-such-topic", timeout_s=REFUSED_TIMEOUT_S, tls=tls)


def test_a_broker_certificate_the_client_ca_does_not_trust_names_the_ca_setting(
        tls_stack: Settings, foreign: TLSFiles) -> None:
    good = tls_stack.tls_files()
    assert good is not None
    distrustful = TLSFiles(foreign.cert.parent / "ca.crt", good.cert, good.key)  # trusts only the other CA
    with pytest.raises(ConfigurationError, match="not trusted.*EVENTRAY_TLS_CA_FILE"):
        describe_partitions(tls_stack.kafka_address, "no-such-topic", timeout_s=REFUSED_TIMEOUT_S, tls=distrustful)


@pytest.mark.parametrize("who", ["foreign", "expired"])
def test_a_client_certificate_from_another_ca_or_expired_is_refused_by_postgres(
        tls_stack: Settings, who: str, request: pytest.FixtureRequest) -> None:
    tls: TLSFiles = request.getfixturevalue(who)
    dsn = with_postgres_tls(_plain_url(tls_stack), tls)
    with pytest.raises(psycopg.OperationalError, match="alert unknown ca" if who == "foreign" else "expired"):
        psycopg.connect(dsn, connect_timeout=5)
    # at the adapter edge the refusal is a configuration error that names the settings to check
    with pytest.raises(ConfigurationError, match="EVENTRAY_TLS_CERT_FILE"):
        migrate(dsn, connect_timeout=5)


def test_rotate_issues_new_certificates_that_the_running_pieces_serve(tls_stack: Settings) -> None:
    tls_dir = tls_stack.tls_dir
    old = {n: _serial(tls_dir / f"{n}.crt") for n in ("kafka", "postgres", "eventray")}
    assert _served_serial_kafka(tls_stack) == old["kafka"]
    assert _served_serial_postgres(tls_stack) == old["postgres"]
    notes = rotate_certificates(_configured())
    assert "PostgreSQL reloaded its certificate" in notes and "Kafka reloaded its keystore" in notes
    new = {n: _serial(tls_dir / f"{n}.crt") for n in old}
    assert all(new[n] != old[n] for n in old)
    assert _served_serial_postgres(tls_stack) == new["postgres"]
    assert _served_serial_kafka(tls_stack) == new["kafka"]
    # new clients with the new client certificate are accepted by both
    with psycopg.connect(tls_stack.dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT client_serial FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                            ).fetchone()[0] == new["eventray"]
    assert _round_trip(tls_stack, "kafka-python") == [f"kafka-python-{i}".encode() for i in range(20)]


# --- TLS-level probes ------------------------------------------------------------------------


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def _context(tls: TLSFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    return ctx


def _served_serial_kafka(s: Settings) -> int:
    tls = s.tls_files()
    assert tls is not None
    with socket.create_connection(("127.0.0.1", s.kafka_port), timeout=5) as raw, \
            _context(tls).wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _served_serial_postgres(s: Settings) -> int:
    tls = s.tls_files()
    assert tls is not None
    with socket.create_connection(("127.0.0.1", s.postgres_port), timeout=5) as raw:
        raw.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
        assert raw.recv(1) == b"S"
        with _context(tls).wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _kafka_handshake_refused(s: Settings, tls: TLSFiles | None) -> bool:
    """True when the broker ends the session of ``tls`` (with TLS 1.3 the client's certificate is
    judged after the client's side of the handshake, so the verdict is read on the first read)."""
    assert tls is not None
    # ApiVersions v0, correlation id 1, client id "probe": any broker answers it
    body = struct.pack("!hhih", 18, 0, 1, 5) + b"probe"
    try:
        with socket.create_connection(("127.0.0.1", s.kafka_port), timeout=5) as raw, \
                _context(tls).wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            conn.sendall(struct.pack("!i", len(body)) + body)
            answer = conn.recv(4)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    return len(answer) < 4
