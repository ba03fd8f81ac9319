"""The dev stack's certificates and the one place that turns them into client options; no services."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from eventray.platform.devstack import certs
from eventray.platform.errors import ConfigurationError
from eventray.platform.settings import Settings
from eventray.platform.tls import TLSFiles, kafka_options, postgres_params


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in ext}


def _eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tls"
    made = certs.ensure(d, user="eventray", netns_ip="10.200.1.2")
    assert made == ("ca", "kafka", "postgres", "ingress", "eventray", "eventray-admin")
    return d


def test_ca_is_a_ca_that_signs_only_leaves(tls_dir: Path) -> None:
    ca = _cert(tls_dir / "ca.crt")
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert basic.ca and basic.path_length == 0
    assert usage.key_cert_sign and usage.crl_sign
    assert ca.issuer == ca.subject
    life = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert life >= dt.timedelta(days=certs.CA_DAYS)


@pytest.mark.parametrize("name", ["kafka", "postgres", "ingress"])
def test_server_certificates_name_every_address_and_chain_to_the_ca(tls_dir: Path, name: str) -> None:
    ca, leaf = _cert(tls_dir / "ca.crt"), _cert(tls_dir / f"{name}.crt")
    leaf.verify_directly_issued_by(ca)  # raises when the signature or issuer is wrong
    assert _sans(leaf) == {"localhost", "127.0.0.1", "10.200.1.2"}
    ip_sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in ip_sans.get_values_for_type(x509.IPAddress)
    assert _eku(leaf) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    basic = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert not basic.ca and usage.digital_signature and not usage.key_cert_sign
    now = dt.datetime.now(dt.timezone.utc)
    assert leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc
    assert leaf.not_valid_after_utc - now > dt.timedelta(days=certs.LEAF_DAYS - 1)


@pytest.mark.parametrize("name", ["eventray", "eventray-admin"])
def test_client_certificates_carry_the_role_as_cn_and_client_auth_only(tls_dir: Path, name: str) -> None:
    leaf = _cert(tls_dir / f"{name}.crt")
    leaf.verify_directly_issued_by(_cert(tls_dir / "ca.crt"))
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == name
    assert _eku(leaf) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_keys_are_private_and_load_with_their_certificates(tls_dir: Path) -> None:
    for key in tls_dir.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((tls_dir / "kafka-keystore.pem").stat().st_mode) == 0o600
    for name in ("kafka", "postgres", "eventray", "eventray-admin"):
        ssl.create_default_context().load_cert_chain(tls_dir / f"{name}.crt", tls_dir / f"{name}.key")
    # Kafka's PEM keystore: PKCS#8 key, then the leaf, then the CA
    pem = (tls_dir / "kafka-keystore.pem").read_text()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----") and pem.count("BEGIN CERTIFICATE") == 2


def test_openssl_verifies_the_chain_for_the_server_name(tls_dir: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(tls_dir / "ca.crt"))
    store = x509.verification.Store([_cert(tls_dir / "ca.crt")])
    verifier = x509.verification.PolicyBuilder().store(store).build_server_verifier(x509.DNSName("localhost"))
    chain = verifier.verify(_cert(tls_dir / "kafka.crt"), [])
    assert chain[-1] == _cert(tls_dir / "ca.crt")
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_ensure_is_idempotent_and_rotate_keeps_the_ca(tls_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in tls_dir.iterdir()}
    assert certs.ensure(tls_dir, user="eventray", netns_ip="10.200.1.2") == ()
    assert {p.name: p.read_bytes() for p in tls_dir.iterdir()} == before
    written = certs.rotate(tls_dir, user="eventray", netns_ip="10.200.1.2")
    assert written == ("kafka", "postgres", "ingress", "eventray", "eventray-admin")
    assert (tls_dir / "ca.crt").read_bytes() == before["ca.crt"]
    assert (tls_dir / "ca.key").read_bytes() == before["ca.key"]
    for name in written:
        assert (tls_dir / f"{name}.crt").read_bytes() != before[f"{name}.crt"]
        assert (tls_dir / f"{name}.key").read_bytes() != before[f"{name}.key"]
        new = _cert(tls_dir / f"{name}.crt")
        new.verify_directly_issued_by(_cert(tls_dir / "ca.crt"))
        assert new.subject == x509.load_pem_x509_certificate(before[f"{name}.crt"]).subject  # Kafka requires it


def test_ensure_reissues_what_expires_soon_or_names_other_hosts(tls_dir: Path) -> None:
    ca = certs.load_ca(tls_dir)
    assert ca is not None
    now = dt.datetime.now(dt.timezone.utc)
    soon = certs.issue(ca, "eventray", server=False, not_before=now - dt.timedelta(days=80),
                       not_after=now + dt.timedelta(days=2))
    certs.write_pem(tls_dir / "eventray.crt", soon.cert_pem(), private=False)
    certs.write_pem(tls_dir / "eventray.key", soon.key_pem(), private=True)
    # the broker moved into a network namespace: its certificate must name the new address
    assert certs.ensure(tls_dir, user="eventray", netns_ip="10.200.9.2") == ("kafka", "postgres", "ingress", "eventray")
    assert "10.200.9.2" in _sans(_cert(tls_dir / "kafka.crt"))


def test_issue_can_make_an_expired_certificate() -> None:
    ca = certs.new_ca()
    now = dt.datetime.now(dt.timezone.utc)
    old = certs.issue(ca, "eventray", server=False, not_before=now - dt.timedelta(days=30),
                      not_after=now - dt.timedelta(days=1))
    assert old.cert.not_valid_after_utc < now
    old.cert.verify_directly_issued_by(ca.cert)


def test_settings_tls_files_default_to_the_dev_stack_and_check_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert Settings(home=home, tls=False).tls_files() is None
    assert Settings(home=home).tls  # on by default
    with pytest.raises(ConfigurationError, match="EVENTRAY_TLS_CA_FILE"):
        Settings(home=home).tls_files()
    certs.ensure(home / "tls")
    files = Settings(home=home, tls=True).tls_files()
    assert files == TLSFiles(home / "tls" / "ca.crt", home / "tls" / "eventray.crt", home / "tls" / "eventray.key")


def test_a_missing_or_mismatched_file_names_its_setting(tls_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="EVENTRAY_TLS_KEY_FILE"):
        Settings(tls=True, tls_ca_file=tls_dir / "ca.crt", tls_cert_file=tls_dir / "eventray.crt",
                 tls_key_file=tmp_path / "nope.key").tls_files()
    with pytest.raises(ConfigurationError, match="EVENTRAY_TLS_CERT_FILE"):  # a key of another certificate
        Settings(tls=True, tls_ca_file=tls_dir / "ca.crt", tls_cert_file=tls_dir / "eventray.crt",
                 tls_key_file=tls_dir / "kafka.key").tls_files()
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match="EVENTRAY_TLS_CA_FILE"):
        Settings(tls=True, tls_ca_file=garbage, tls_cert_file=tls_dir / "eventray.crt",
                 tls_key_file=tls_dir / "eventray.key").tls_files()
    if os.geteuid() != 0:  # root reads any file
        unreadable = tmp_path / "unreadable.key"
        unreadable.write_bytes((tls_dir / "eventray.key").read_bytes())
        unreadable.chmod(0)
        with pytest.raises(ConfigurationError, match="not readable"):
            TLSFiles(tls_dir / "ca.crt", tls_dir / "eventray.crt", unreadable).check()


def test_client_options_per_library_and_the_dsn(tls_dir: Path, tmp_path: Path) -> None:
    tls = TLSFiles(tls_dir / "ca.crt", tls_dir / "eventray.crt", tls_dir / "eventray.key")
    assert kafka_options(None, "kafka-python") == {"reconnect_backoff_max_ms": 1000} and postgres_params(None) == {}
    kp = kafka_options(tls, "kafka-python")
    assert kp["security_protocol"] == "SSL" and kp["ssl_certfile"] == str(tls.cert)
    assert kp["ssl_cafile"] == str(tls.ca) and kp["ssl_keyfile"] == str(tls.key)
    ck = kafka_options(tls, "confluent-kafka")
    assert ck["security.protocol"] == "ssl" and ck["ssl.key.location"] == str(tls.key)
    assert ck["ssl.ca.location"] == str(tls.ca) and ck["ssl.certificate.location"] == str(tls.cert)
    s = Settings(home=tmp_path, tls=True, tls_ca_file=tls.ca, tls_cert_file=tls.cert, tls_key_file=tls.key,
                 database_url="postgresql://eventray@127.0.0.1:5/db?application_name=x&sslmode=require")
    assert "sslmode=require" in s.dsn and "sslmode=verify-full" not in s.dsn  # the URL's own setting wins
    assert "application_name=x" in s.dsn and "sslcert=" in s.dsn
    kw = Settings(home=tmp_path, tls=True, tls_ca_file=tls.ca, tls_cert_file=tls.cert, tls_key_file=tls.key,
                  database_url="host=127.0.0.1 dbname=db").dsn
    assert "sslmode='verify-full'" in kw and f"sslrootcert='{tls.ca}'" in kw
    assert Settings(home=tmp_path, tls=False).dsn.endswith("/eventray")  # TLS off: the plain URL


def test_a_tls_refusal_from_postgres_is_a_configuration_error_at_the_adapter_edge() -> None:
    import psycopg

    from eventray.platform._postgres import translate
    from eventray.platform.errors import ServiceUnavailable

    for text in ('connection to server at "127.0.0.1", port 5 failed: SSL error: tlsv1 alert unknown ca',
                 "FATAL:  connection requires a valid client certificate",
                 'FATAL:  no pg_hba.conf entry for host "127.0.0.1", user "eventray", database "x", no encryption'):
        err = translate(psycopg.OperationalError(text), doing="connecting")
        assert isinstance(err, ConfigurationError), text
        assert "EVENTRAY_TLS_CERT_FILE" in err.message
    dropped = translate(psycopg.OperationalError("SSL SYSCALL error: EOF detected"), doing="reading")
    assert isinstance(dropped, ServiceUnavailable)  # a dropped connection stays retryable


def test_an_unreachable_broker_stays_retryable_with_or_without_tls(tls_dir: Path) -> None:
    import socket

    from eventray.platform.errors import ServiceUnavailable
    from eventray.platform.tls import kafka_unavailable

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tls = TLSFiles(tls_dir / "ca.crt", tls_dir / "eventray.crt", tls_dir / "eventray.key")
    for files in (tls, None):
        err = kafka_unavailable("no broker", bootstrap=f"127.0.0.1:{port}", tls=files)
        assert type(err) is ServiceUnavailable and err.details["bootstrap"] == f"127.0.0.1:{port}"


def test_the_reconnect_backoff_is_an_option_each_driver_accepts() -> None:
    import confluent_kafka as ck
    from kafka import KafkaProducer

    ck.Producer({"bootstrap.servers": "127.0.0.1:1", **kafka_options(None, "confluent-kafka")})  # librdkafka checks names
    producer = KafkaProducer(bootstrap_servers="127.0.0.1:1", api_version=(2, 8), **kafka_options(None, "kafka-python"))
    try:
        assert producer.config["reconnect_backoff_max_ms"] == 1000
    finally:
        producer.close(timeout=0)
