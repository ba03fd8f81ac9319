"""The dev stack's certificates: one CA, a certificate per server and per client identity.

Everything lives in ``<home>/tls`` (keys mode 0600), made with the ``cryptography`` library:

- ``ca.crt`` / ``ca.key``: the dev CA (10 years; kept by :func:`rotate`);
- ``kafka.crt`` / ``kafka.key`` and ``kafka-keystore.pem`` (key + chain in one file, the PEM
  keystore Kafka reads): the broker, SANs ``localhost``, ``127.0.0.1`` and the netns address;
- ``postgres.crt`` / ``postgres.key``: the PostgreSQL server, same SANs;
- ``<name>.crt`` / ``<name>.key`` for each client identity: ``<user>`` (every eventray
  process; its CN is the PostgreSQL role ``settings.postgres_user``, as ``cert``
  authentication requires) and ``<user>-admin`` (operators' tools, mapped to the same role by
  ``pg_ident``).

:func:`ensure` is idempotent: it keeps valid files and issues only what is missing, expiring
within :data:`RENEW_BEFORE` or no longer matching (other SANs, another CA). :func:`rotate`
issues new leaf certificates from the same CA, so clients holding the CA keep trusting the
servers; the pieces then re-read theirs (see ``kafka.reload_certificates`` and
``postgres.reload_certificates``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from eventray.platform._files import atomic_write
from eventray.platform.errors import StackError
from eventray.platform.settings import Settings
from eventray.platform.tls import TLSFiles

__all__ = ["CA_DAYS", "LEAF_DAYS", "SERVERS", "Issued", "clients", "ensure", "issue", "load_ca", "new_ca",
           "rotate", "server_hosts", "write_pem"]

CA_DAYS = 3650
LEAF_DAYS = 90
#: ensure() re-issues a leaf certificate that expires within this
RENEW_BEFORE = dt.timedelta(days=7)
#: the servers: the broker, the database and the GraphQL ingress (Serve's proxy and replicas)
SERVERS = ("kafka", "postgres", "ingress")
_ORG = "eventray dev stack"
_CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    """A key and its certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM (what Kafka's PEM keystore, libpq and OpenSSL read)."""
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def new_ca(cn: str = "eventray dev CA", *, days: int = CA_DAYS) -> Issued:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def issue(ca: Issued, cn: str, *, server: bool, hosts: Iterable[str] = (),
          not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
          days: int = LEAF_DAYS) -> Issued:
    """A leaf certificate signed by ``ca``.

    Args:
        ca: the issuing CA.
        cn: the subject's common name (for a client: its PostgreSQL user).
        server: a server certificate (extended key usage serverAuth and clientAuth: the broker
            is its own client) or a client one (clientAuth only).
        hosts: subject alternative names; IP addresses become IP SANs, the rest DNS names.
        not_before, not_after: the validity window; by default from now (less a little clock
            skew) for ``days`` days. Tests pass a window in the past for an expired certificate.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - _CLOCK_SKEW
    end = not_after or start + _CLOCK_SKEW + dt.timedelta(days=days)
    sans: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    builder = (
        x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_agreement=True, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, encipher_only=False, decipher_only=False), critical=True)
        # a server is a client too (the broker sends transaction markers to itself over SSL)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                                             if server else [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def write_pem(path: Path, data: bytes, *, private: bool) -> None:
    """Write ``data`` atomically (a temporary file, then a rename), mode 0600 for a key."""
    atomic_write(path, data, mode=0o600 if private else 0o644)


def load_ca(tls_dir: Path) -> Issued | None:
    """The CA in ``tls_dir``, or None when there is none yet."""
    try:
        key = serialization.load_pem_private_key((tls_dir / "ca.key").read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((tls_dir / "ca.crt").read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise StackError(f"the dev CA in {tls_dir} cannot be read ({e}); delete {tls_dir} to make a new one") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise StackError(f"the dev CA key in {tls_dir} is not an EC key; delete {tls_dir} to make a new one")
    return Issued(key, cert)


def server_hosts(netns_ip: str | None = None) -> tuple[str, ...]:
    """The names a dev server answers on: what clients put in their bootstrap / host."""
    return ("localhost", "127.0.0.1", *((netns_ip,) if netns_ip else ()))


def clients(user: str = "eventray") -> tuple[str, ...]:
    """The client identities: ``user`` (the PostgreSQL role) and ``<user>-admin``."""
    return (user, f"{user}-admin")


def _wanted(user: str, hosts: tuple[str, ...]) -> dict[str, tuple[bool, tuple[str, ...]]]:
    wanted: dict[str, tuple[bool, tuple[str, ...]]] = {name: (True, hosts) for name in SERVERS}
    wanted.update({name: (False, ()) for name in clients(user)})
    return wanted


def _current(path: Path, ca: Issued, hosts: tuple[str, ...]) -> bool:
    """True when the certificate at ``path`` is signed by ``ca``, has ``hosts`` and is not expiring."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    if cert.issuer != ca.cert.subject or cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return False
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    try:
        have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = {str(n.value) for n in have}
    except x509.ExtensionNotFound:
        names = set()
    return names == set(hosts)


def _write_leaf(tls_dir: Path, name: str, leaf: Issued, ca: Issued, *, server: bool) -> None:
    write_pem(tls_dir / f"{name}.key", leaf.key_pem(), private=True)
    write_pem(tls_dir / f"{name}.crt", leaf.cert_pem(), private=False)
    if name == "kafka":  # Kafka's PEM keystore: the key and the chain in one file
        write_pem(tls_dir / "kafka-keystore.pem", leaf.key_pem() + leaf.cert_pem() + ca.cert_pem(), private=True)


def ensure(tls_dir: Path, *, user: str = "eventray", netns_ip: str | None = None) -> tuple[str, ...]:
    """Make the CA and every certificate the dev stack needs unless present and current.

    Args:
        tls_dir: ``settings.tls_dir``.
        user: the PostgreSQL role, CN of the main client certificate (``settings.postgres_user``).
        netns_ip: an extra address the servers answer on (``settings.kafka_netns_ip``).

    Returns:
        The names issued by this call (``ca`` included when the CA is new); empty when all were kept.
    """
    issued: list[str] = []
    tls_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(tls_dir, 0o755)  # the server user (postgres) reads the CA; keys stay 0600
    ca = load_ca(tls_dir)
    if ca is None or ca.cert.not_valid_after_utc - RENEW_BEFORE < _now():
        ca = new_ca()
        write_pem(tls_dir / "ca.key", ca.key_pem(), private=True)
        write_pem(tls_dir / "ca.crt", ca.cert_pem(), private=False)
        issued.append("ca")
    hosts = server_hosts(netns_ip)
    for name, (server, sans) in _wanted(user, hosts).items():
        if not _current(tls_dir / f"{name}.crt", ca, sans) or not (tls_dir / f"{name}.key").exists():
            _write_leaf(tls_dir, name, issue(ca, name, server=server, hosts=sans), ca, server=server)
            issued.append(name)
    return tuple(issued)


def rotate(tls_dir: Path, *, user: str = "eventray", netns_ip: str | None = None) -> tuple[str, ...]:
    """Issue new leaf certificates (new keys) from the existing CA; make the CA first if none.

    Returns:
        The names of the certificates written.
    """
    made = ensure(tls_dir, user=user, netns_ip=netns_ip)
    ca = load_ca(tls_dir)
    assert ca is not None
    hosts = server_hosts(netns_ip)
    for name, (server, sans) in _wanted(user, hosts).items():
        if name not in made:
            _write_leaf(tls_dir, name, issue(ca, name, server=server, hosts=sans), ca, server=server)
    return (*SERVERS, *clients(user))


def admin_tls(settings: Settings) -> TLSFiles | None:
    """The identity the dev stack's own checks present (``<user>-admin``); None when TLS is off."""
    if not settings.tls:
        return None
    name = clients(settings.postgres_user)[1]
    return TLSFiles(settings.tls_dir / "ca.crt", settings.tls_dir / f"{name}.crt",
                    settings.tls_dir / f"{name}.key").check()


def ensure_for(settings: Settings) -> tuple[str, ...]:
    """:func:`ensure` for the dev stack of ``settings`` (its home, user and netns address)."""
    return ensure(settings.tls_dir, user=settings.postgres_user, netns_ip=settings.kafka_netns_ip)
