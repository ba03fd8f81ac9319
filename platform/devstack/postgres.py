"""The dev PostgreSQL server: a private cluster run with the distribution's binaries.

The cluster lives in ``<data_dir>/postgres`` (TCP on 127.0.0.1 only; trust auth for
``settings.postgres_user``, or with ``EVENTRAY_TLS`` ``ssl=on`` and only ``hostssl ... cert``
lines in pg_hba: a client needs a certificate from the dev CA whose CN maps to the role). PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` system user the Debian package creates; when that user cannot reach
``<data_dir>`` (a home of mode 700, like ``/root``) the cluster goes to
``/var/lib/eventray/<hash>/postgres`` and ``<data_dir>/postgres`` links to it. When the
configured port is taken by a foreign server another free port is chosen; both choices are
kept in the state file (see :func:`eventray.platform.devstack.state.effective_settings`).
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from eventray.platform.errors import StackError
from eventray.platform.settings import Settings, with_postgres_tls

from . import _proc, certs
from .state import PieceStatus, StackState, home_digest

log = logging.getLogger("eventray.devstack.postgres")

SERVER_CONF = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",  # TCP only: no socket path length limits, no clashes
    "shared_buffers": "256MB",
    "max_connections": "200",
}
_DISK_FOR_CLUSTER = 256 * 1024**2


def bin_dir() -> Path | None:
    """The directory of the newest installed PostgreSQL server binaries, if any."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


def _require_bin_dir() -> Path:
    found = bin_dir()
    if found is not None and (found / "initdb").exists():
        return found
    if _proc.is_root() and shutil.which("apt-get"):
        log.info("PostgreSQL is not installed; installing Debian's postgresql package")
        _proc.apt_install(["postgresql"])
        found = bin_dir()
        if found is not None:
            return found
    raise StackError(
        "PostgreSQL server binaries (initdb, pg_ctl) are not installed. Install them with: "
        "sudo apt-get install -y postgresql  (or run `make deps` as root), or point "
        "EVENTRAY_DATABASE_URL at an existing server."
    )


def _as_server_user(args: Sequence[str]) -> list[str]:
    if not _proc.is_root():
        return list(args)
    try:
        pwd.getpwnam("postgres")
    except KeyError as e:
        raise StackError(
            "running as root, the dev PostgreSQL must run as the 'postgres' system user, which "
            "does not exist. Install Debian's postgresql package (apt-get install -y postgresql) "
            "or run `eventray dev up` as a normal user."
        ) from e
    return ["runuser", "-u", "postgres", "--", *args]


def _chown_to_server_user(path: Path) -> None:
    if _proc.is_root():
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def cluster_dir(settings: Settings, state: StackState) -> Path:
    """Where the cluster lives (decided once, then remembered in the state file)."""
    if state.postgres_dir:
        return Path(state.postgres_dir)
    preferred = settings.data_dir / "postgres"
    if preferred.is_symlink():
        return preferred.resolve()
    if not _proc.is_root():
        return preferred
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if _server_user_can_reach(settings.data_dir):
        return preferred
    digest = home_digest(settings, 12)
    return Path("/var/lib/eventray") / digest / "postgres"


def _server_user_can_reach(path: Path) -> bool:
    return subprocess.run(_as_server_user(["test", "-x", str(path)]), check=False).returncode == 0


def _log_file(settings: Settings, cdir: Path) -> Path:
    if not _proc.is_root():
        return settings.logs_dir / "postgres.log"
    return cdir.parent / "postgres.log"


def _postmaster(cdir: Path) -> tuple[int | None, int | None]:
    """(pid, port) from ``postmaster.pid`` when that server is alive."""
    try:
        lines = (cdir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None, None
    return (pid, port) if _proc.pid_alive(pid) else (None, None)


def _dsn(settings: Settings, port: int, db: str | None = None) -> str:
    return f"postgresql://{settings.postgres_user}@127.0.0.1:{port}/{db or settings.postgres_db}"


def _admin_dsn(settings: Settings, port: int, db: str | None = None) -> str:
    """The dev stack's own connection: with TLS, as ``<user>-admin`` with ``verify-full``."""
    return with_postgres_tls(_dsn(settings, port, db), certs.admin_tls(settings))


def status(settings: Settings) -> PieceStatus:
    if settings.database_url:
        return PieceStatus("postgres", "external", settings.database_url)
    state = StackState.load(settings.home)
    cdir = cluster_dir(settings, state) if state.postgres_dir else settings.data_dir / "postgres"
    pid, port = _postmaster(cdir)
    if pid is None:
        port = state.postgres_port or settings.postgres_port
        return PieceStatus("postgres", "stopped", _dsn(settings, port), detail=str(cdir))
    return PieceStatus("postgres", "running", _dsn(settings, port or 0), pid, detail=str(cdir))


def _choose_port(settings: Settings, state: StackState) -> int:
    for port in (settings.postgres_port, state.postgres_port):
        if port and _proc.port_is_free(port):
            return port
    port = _proc.free_port()
    log.warning(
        "port %s is taken by %s; the dev PostgreSQL uses port %s instead (kept in %s)",
        settings.postgres_port, _proc.who_listens(settings.postgres_port), port,
        settings.home / "devstack.json",
    )
    return port


def _initdb(settings: Settings, bins: Path, cdir: Path) -> None:
    _proc.require_disk(cdir.parent, _DISK_FOR_CLUSTER, "the PostgreSQL cluster")
    cdir.mkdir(parents=True, exist_ok=True)
    _chown_to_server_user(cdir)
    if _proc.is_root() and cdir.parent != settings.data_dir:
        _chown_to_server_user(cdir.parent)
    os.chmod(cdir, 0o700)
    _proc.run(
        _as_server_user([str(bins / "initdb"), "-D", str(cdir), "-U", settings.postgres_user,
                         "--auth=trust", "-E", "UTF8", "--no-locale"]),
        what="initdb of the dev PostgreSQL cluster", timeout=180,
    )
    with open(cdir / "postgresql.conf", "a") as f:
        f.write("\n# eventray dev stack settings (rewritten by `eventray dev up`)\n"
                "include_if_exists = 'eventray.conf'\n")


#: first line of a pg_hba.conf / pg_ident.conf eventray wrote (so a later run may rewrite it)
_HBA_MARK = "# written by eventray dev up"
#: the server's copies of its certificate, key and the CA, inside the cluster directory
_SSL_FILES = {"server.crt": "postgres.crt", "server.key": "postgres.key", "root.crt": "ca.crt"}


def _write_conf(settings: Settings, cdir: Path, port: int) -> None:
    conf = cdir / "eventray.conf"
    values = {**SERVER_CONF, "port": str(port)}
    if settings.tls:
        _install_certificates(settings, cdir)
        values.update({"ssl": "on", "ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'",
                       "ssl_ca_file": "'root.crt'", "ssl_min_protocol_version": "'TLSv1.2'"})
    conf.write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
    _chown_to_server_user(conf)
    _write_hba(settings, cdir)


def _write_hba(settings: Settings, cdir: Path) -> None:
    """With TLS: ``hostssl ... cert`` for the role only (no plain ``host`` line); without: trust on localhost.

    Without TLS a pg_hba.conf of initdb's own is left as it is; one eventray wrote is replaced.
    """
    hba, ident = cdir / "pg_hba.conf", cdir / "pg_ident.conf"
    user = settings.postgres_user
    if settings.tls:
        lines = [_HBA_MARK + " (TLS: client certificates only)"]
        lines += [f"hostssl all {user} {net} cert clientcert=verify-full map=eventray"
                  for net in ("127.0.0.1/32", "::1/128")]
        # the certificate CNs that may log in as the role: the services' and the operators'
        idents = [_HBA_MARK, *(f"eventray {cn} {user}" for cn in certs.clients(user))]
        ident.write_text("\n".join(idents) + "\n")
        _chown_to_server_user(ident)
    elif hba.read_text().startswith(_HBA_MARK):
        lines = [_HBA_MARK + " (no TLS)", *(f"host all all {net} trust" for net in ("127.0.0.1/32", "::1/128"))]
    else:
        return
    hba.write_text("\n".join(lines) + "\n")
    _chown_to_server_user(hba)


def _install_certificates(settings: Settings, cdir: Path) -> None:
    """Copy the server's certificate, key (0600) and the CA into the cluster, owned by the server user.

    PostgreSQL refuses a key that others can read; the copies also spare the server user from
    reaching ``<home>/tls``.
    """
    for name, source in _SSL_FILES.items():
        src = settings.tls_dir / source
        try:
            data = src.read_bytes()
        except OSError as e:
            raise StackError(f"the dev PostgreSQL's TLS file {src} cannot be read ({e}); run `eventray dev certs`"
                             ) from e
        dest = cdir / name
        tmp = cdir / f".{name}.tmp"
        tmp.write_bytes(data)
        os.chmod(tmp, 0o600 if name.endswith(".key") else 0o644)
        _chown_to_server_user(tmp)
        os.replace(tmp, dest)


def reload_certificates(settings: Settings) -> bool:
    """Copy the (rotated) certificates into the running cluster and reload it; False when it is stopped.

    ``pg_ctl reload`` (SIGHUP) makes PostgreSQL re-read its ssl files for new connections.
    """
    state = StackState.load(settings.home)
    cdir = cluster_dir(settings, state)
    pid, _ = _postmaster(cdir)
    if pid is None:
        return False
    _install_certificates(settings, cdir)
    bins = _require_bin_dir()
    _proc.run(_as_server_user([str(bins / "pg_ctl"), "-D", str(cdir), "reload"]),
              what="reloading the dev PostgreSQL's certificates", timeout=30)
    return True


def start(settings: Settings) -> PieceStatus:
    """Start the dev server unless it runs, create the database, wait until it answers.

    Raises:
        StackError: binaries missing and not installable, initdb or start failed.
    """
    state = StackState.load(settings.home)
    cdir = cluster_dir(settings, state)
    pid, port = _postmaster(cdir)
    started = False
    log_file = _log_file(settings, cdir)
    if pid is None:
        bins = _require_bin_dir()
        if not (cdir / "PG_VERSION").exists():
            if settings.data_fs_mb:  # on a small filesystem of the stack's own (disk-full-postgres)
                from . import smallfs

                smallfs.ensure(settings, cdir, settings.data_fs_mb, owner="postgres" if _proc.is_root() else None)
            _initdb(settings, bins, cdir)
        link = settings.data_dir / "postgres"
        if cdir != link and not link.exists():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            link.symlink_to(cdir)
        port = _choose_port(settings, state)
        _write_conf(settings, cdir, port)
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        log_file.touch()
        _chown_to_server_user(log_file)
        if log_file.parent != settings.logs_dir:
            visible = settings.logs_dir / "postgres.log"
            if not visible.is_symlink():
                visible.unlink(missing_ok=True)
                visible.symlink_to(log_file)
        _proc.run(
            _as_server_user([str(bins / "pg_ctl"), "-D", str(cdir), "-l", str(log_file),
                             "-w", "-t", "60", "start"]),
            what="starting the dev PostgreSQL", timeout=90,
        )
        pid, port = _postmaster(cdir)
        started = True
        log.info("started PostgreSQL (pid %s) on port %s, log %s", pid, port, log_file)
    assert port is not None
    StackState.update(settings.home, postgres_port=port, postgres_dir=str(cdir))
    _proc.wait_until(lambda: _create_database(settings, port), timeout=60,
                     what=f"PostgreSQL on 127.0.0.1:{port}", log_file=log_file)
    if settings.postgres_proxy:  # clients go through the chaos proxy (effective_settings says so)
        from . import toxiproxy

        toxiproxy.ensure_proxy(settings, toxiproxy.POSTGRES, toxiproxy.postgres_proxy_port(settings), port)
    return PieceStatus("postgres", "running", _dsn(settings, port), pid, started, str(cdir))


def _create_database(settings: Settings, port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(_admin_dsn(settings, port, "postgres"), connect_timeout=3,
                             autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (settings.postgres_db,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{settings.postgres_db}"')
        return ready(_admin_dsn(settings, port))
    except psycopg.Error as e:
        log.debug("PostgreSQL on port %s not ready yet: %r", port, e)
        return False


def ready(dsn: str) -> bool:
    """True when PostgreSQL at ``dsn`` accepts a connection and a query."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error as e:
        log.debug("PostgreSQL at %s not ready: %r", dsn, e)
        return False


def stop(settings: Settings) -> bool:
    """Stop the dev server (``pg_ctl stop -m fast``); True when one was running."""
    if settings.postgres_proxy:
        from . import toxiproxy

        toxiproxy.remove_proxy(settings, toxiproxy.POSTGRES)  # refused, as the server itself would be
    state = StackState.load(settings.home)
    cdir = cluster_dir(settings, state)
    pid, _ = _postmaster(cdir)
    if pid is None:
        return False
    bins = bin_dir()
    if bins is None:
        _proc.terminate([pid], timeout=60)
        return True
    _proc.run(_as_server_user([str(bins / "pg_ctl"), "-D", str(cdir), "-m", "fast", "-w",
                               "-t", "60", "stop"]), what="stopping the dev PostgreSQL", timeout=90)
    return True
