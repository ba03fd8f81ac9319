"""The client side of mutual TLS: one place that turns certificate files into driver options.

Every eventray process that talks to Kafka or PostgreSQL presents a client certificate and
verifies the server's against a CA. :class:`TLSFiles` names the three files (CA, certificate,
key); :meth:`~eventray.platform.settings.Settings.tls_files` builds it from the settings
(``EVENTRAY_TLS_CA_FILE``, ``EVENTRAY_TLS_CERT_FILE``, ``EVENTRAY_TLS_KEY_FILE``, defaulting
to the dev stack's generated files) and checks that they can be read. The functions below are
the only places that know each driver's option names:

- :func:`kafka_options` for kafka-python (``security_protocol="SSL"``, ``ssl_cafile`` ...) and
  for confluent-kafka / librdkafka (``security.protocol=ssl``, ``ssl.ca.location`` ...);
- :func:`postgres_params` for libpq (``sslmode=verify-full``, ``sslrootcert`` ...), which
  :attr:`Settings.dsn` adds to the connection URL.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eventray.platform.errors import ConfigurationError, EventrayError, ServiceUnavailable

__all__ = ["KafkaClientLibrary", "TLSFiles", "kafka_options", "kafka_unavailable", "postgres_params"]

KafkaClientLibrary = Literal["kafka-python", "confluent-kafka"]

#: the setting that names each file, for error messages
_SETTING = {"ca": "EVENTRAY_TLS_CA_FILE", "cert": "EVENTRAY_TLS_CERT_FILE", "key": "EVENTRAY_TLS_KEY_FILE"}


@dataclass(frozen=True)
class TLSFiles:
    """A client identity and the CA it trusts, as PEM files (picklable, so actors receive it).

    Attributes:
        ca: the CA certificate(s) that signed the servers' certificates.
        cert: this client's certificate (its CN is the PostgreSQL user for ``cert`` auth).
        key: this client's private key (unencrypted PEM).
    """

    ca: Path
    cert: Path
    key: Path

    def check(self) -> TLSFiles:
        """Return self when every file can be read.

        Raises:
            ConfigurationError: a file is missing or unreadable; the message names the
                ``EVENTRAY_TLS_*`` setting to fix.
        """
        for field, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            if not path.is_file():
                raise ConfigurationError(
                    f"TLS is on (EVENTRAY_TLS) but the {field} file {path} does not exist: set "
                    f"{_SETTING[field]} to a PEM file, run `eventray dev certs` to generate the dev "
                    "stack's, or turn TLS off with EVENTRAY_TLS=false", setting=_SETTING[field], path=str(path))
            if not os.access(path, os.R_OK):
                raise ConfigurationError(
                    f"TLS is on (EVENTRAY_TLS) but the {field} file {path} is not readable by this user: "
                    f"fix its permissions or point {_SETTING[field]} at a readable copy",
                    setting=_SETTING[field], path=str(path))
        stamps = tuple(p.stat().st_mtime_ns for p in (self.ca, self.cert, self.key))
        _check_pem(self.ca, self.cert, self.key, stamps)
        return self


@functools.lru_cache(maxsize=64)
def _check_pem(ca: Path, cert: Path, key: Path, stamps: tuple[int, ...]) -> None:
    """Load the files as OpenSSL will (once per version of them): bad PEM or a key of another
    certificate is a configuration error here, not a handshake failure inside a driver."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        context.load_verify_locations(cafile=str(ca))
    except (ssl.SSLError, ValueError) as e:
        raise ConfigurationError(f"the CA file {ca} holds no usable PEM certificate ({e}): fix "
                                 f"{_SETTING['ca']}", setting=_SETTING["ca"], path=str(ca)) from e
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except ssl.SSLError as e:
        raise ConfigurationError(f"the client certificate {cert} and key {key} do not load together ({e}): fix "
                                 f"{_SETTING['cert']} / {_SETTING['key']}", setting=_SETTING["cert"],
                                 path=str(cert)) from e


#: the reconnect backoff of every eventray Kafka client. The drivers back off exponentially up to
#: 30 s (kafka-python) or 10 s (librdkafka) between connection attempts, so after a broker
#: restart of 15-20 s a client could sleep most of that again before it tried: the chaos monkey
#: measured 12 s from the broker answering to commands acknowledged again. Capped at 1 s, a
#: broker that is down costs each client one refused connect a second.
RECONNECT_OPTIONS: dict[str, dict[str, Any]] = {
    "kafka-python": {"reconnect_backoff_max_ms": 1000},
    "confluent-kafka": {"reconnect.backoff.max.ms": 1000},
}


def kafka_options(tls: TLSFiles | None, library: KafkaClientLibrary) -> dict[str, Any]:
    """Connection options of a Kafka client of ``library``: the reconnect backoff
    (:data:`RECONNECT_OPTIONS`) and, when ``tls`` is given, TLS (plaintext when it is None).

    The result merges into the client's configuration: keyword arguments for kafka-python's
    ``KafkaProducer`` / ``KafkaConsumer`` / ``KafkaAdminClient``, a config dict entry set for
    confluent-kafka's ``Producer`` / ``Consumer``. Hostnames are verified in both.
    """
    base = dict(RECONNECT_OPTIONS[library])
    if tls is None:
        return base
    tls.check()
    if library == "kafka-python":
        return {**base, "security_protocol": "SSL", "ssl_check_hostname": True, "ssl_cafile": str(tls.ca),
                "ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
    return {**base, "security.protocol": "ssl", "ssl.ca.location": str(tls.ca),
            "ssl.certificate.location": str(tls.cert), "ssl.key.location": str(tls.key),
            "ssl.endpoint.identification.algorithm": "https"}


def postgres_params(tls: TLSFiles | None) -> dict[str, str]:
    """libpq connection parameters for ``tls``: ``verify-full`` and the three files; empty when None."""
    if tls is None:
        return {}
    tls.check()
    return {"sslmode": "verify-full", "sslrootcert": str(tls.ca), "sslcert": str(tls.cert),
            "sslkey": str(tls.key)}


def kafka_unavailable(message: str, *, bootstrap: str, tls: TLSFiles | None) -> EventrayError:
    """The error for a Kafka client that could not reach ``bootstrap``: TLS's fault or not.

    The Kafka drivers retry a refused handshake until their timeout and then report only that
    no broker answered. With TLS on this probes the first broker once: a certificate it refuses,
    or one of its own that ``tls.ca`` does not trust, is a :class:`ConfigurationError` naming the
    setting to fix (sending again fails the same way); anything else stays
    :class:`ServiceUnavailable` (retryable).
    """
    refusal = _kafka_tls_refusal(bootstrap, tls) if tls is not None else None
    if refusal is None:
        return ServiceUnavailable(message, bootstrap=bootstrap)
    return ConfigurationError(f"{message}. {refusal}", bootstrap=bootstrap)


def _kafka_tls_refusal(bootstrap: str, tls: TLSFiles, timeout_s: float = 5.0) -> str | None:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.load_cert_chain(str(tls.cert), str(tls.key))
    # ApiVersions v0, correlation id 1, client id "eventray-probe": any broker answers it
    body = struct.pack("!hhih", 18, 0, 1, 14) + b"eventray-probe"
    try:
        raw = socket.create_connection((host, int(port)), timeout=timeout_s)
    except (OSError, ValueError):
        return None  # not reachable at all: not a TLS matter
    try:
        with context.wrap_socket(raw, server_hostname=host) as conn:
            conn.sendall(struct.pack("!i", len(body)) + body)
            conn.recv(4)
    except ssl.SSLCertVerificationError as e:
        return (f"The broker's certificate is not trusted ({e.verify_message}): set {_SETTING['ca']} to the CA "
                "that signed it (and check that it names the bootstrap host)")
    except ssl.SSLError as e:  # an alert from the broker: it judged the client's certificate
        return (f"The broker refused this client's certificate ({e.reason or e}): {_SETTING['cert']} / "
                f"{_SETTING['key']} must be a current certificate signed by the broker's CA")
    except OSError:
        return None  # reset, closed, timed out: no verdict on the certificates, stay retryable
    finally:
        raw.close()
    return None
