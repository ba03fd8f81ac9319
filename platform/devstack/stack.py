"""``dev up | down | status``: the three pieces together, idempotent, serialized by a file lock."""

from __future__ import annotations

import importlib
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.table import Table

from eventray.platform.errors import StackError
from eventray.platform.settings import Settings

from . import certs, kafka, postgres, rayhead, smallfs, toxiproxy
from .state import PieceStatus, StackState, effective_settings, locked, state_file

log = logging.getLogger("eventray.devstack")

PIECES = ("postgres", "kafka", "ray")
_MODULES = {"postgres": postgres, "kafka": kafka, "ray": rayhead}


@dataclass(frozen=True)
class StackReport:
    """The outcome of ``up`` / ``status``.

    Attributes:
        settings: effective settings (addresses filled in, see ``effective_settings``).
        pieces: one status per piece, in ``PIECES`` order.
        migrations: names of the migrations ``up`` applied (empty when none were pending).
        seconds: how long the call took.
    """

    settings: Settings
    pieces: tuple[PieceStatus, ...]
    migrations: tuple[str, ...] = ()
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())

    @property
    def started(self) -> tuple[str, ...]:
        """Names of the pieces this call started (empty for a no-op ``up``)."""
        return tuple(p.name for p in self.pieces if p.started)

    def __getitem__(self, name: str) -> PieceStatus:
        for piece in self.pieces:
            if piece.name == name:
                return piece
        raise KeyError(name)


def status(settings: Settings | None = None) -> StackReport:
    """Report each piece (running / stopped / external) without starting anything."""
    settings = settings if settings is not None else Settings()
    return StackReport(
        effective_settings(settings), tuple(_MODULES[n].status(settings) for n in PIECES)
    )


def up(settings: Settings | None = None, *, console: Console | None = None) -> StackReport:
    """Bring the local stack up: PostgreSQL (then migrations), Kafka, a Ray head.

    Pieces whose address is configured (``EVENTRAY_DATABASE_URL``, ``EVENTRAY_KAFKA_BOOTSTRAP``,
    ``EVENTRAY_RAY_ADDRESS``) are left alone. Running pieces are only checked for readiness,
    so a second call is a quick no-op. Safe to call from several processes at once.

    Args:
        settings: configured settings; ``Settings()`` when omitted.
        console: where to show progress; a stderr console when omitted.

    Returns:
        The report, whose ``settings`` are the effective ones to connect with.

    Raises:
        StackError: a piece could not be started; the message says what to do.
    """
    settings = settings if settings is not None else Settings()
    console = console or Console(stderr=True)
    t0 = time.monotonic()
    with locked(settings.home):
        current = {n: _MODULES[n].status(settings) for n in PIECES}
        todo = [n for n in PIECES if current[n].state != "external"]
        notes: list[str] = []
        if settings.tls and any(current[n].state != "external" for n in ("postgres", "kafka")):
            made = certs.ensure_for(settings)
            if made:
                notes.append(f"issued TLS certificates in {settings.tls_dir}: {', '.join(made)}")
        with console.status("checking prerequisites") as spinner:
            # installs (apt, Maven) go one at a time, before anything starts in parallel
            if current["postgres"].state == "stopped":
                postgres._require_bin_dir()
            if current["kafka"].state == "stopped":
                kafka.prepare(settings)
            waiting = set(todo)
            spinner.update(_waiting_text(waiting, current))
            results: dict[str, PieceStatus] = dict(current)
            migrations: tuple[str, ...] = ()
            errors: list[BaseException] = []

            def start_postgres() -> PieceStatus:
                nonlocal migrations
                piece = postgres.start(settings)
                migrations = _migrate(effective_settings(settings).dsn)  # with TLS: the client's files
                return piece

            starters: dict[str, Callable[[], PieceStatus]] = {
                "postgres": start_postgres,
                "kafka": lambda: kafka.start(settings),
                "ray": lambda: rayhead.start(settings),
            }
            with ThreadPoolExecutor(max_workers=3, thread_name_prefix="devstack") as pool:
                futures = {n: pool.submit(starters[n]) for n in todo}
                for name, fut in futures.items():
                    try:
                        results[name] = fut.result()
                    except BaseException as e:  # noqa: BLE001 - reported below, after the others
                        errors.append(e)
                        log.error("dev up: %s failed: %s", name, e)
                    waiting.discard(name)
                    spinner.update(_waiting_text(waiting, current))
        if current["postgres"].state == "external" and settings.database_url:
            migrations = _migrate(settings.dsn)
    if errors:
        first = errors[0]
        if isinstance(first, StackError):
            raise first
        raise StackError(f"dev up failed: {first!r}") from first
    return StackReport(
        effective_settings(settings), tuple(results[n] for n in PIECES), migrations,
        time.monotonic() - t0, tuple(notes),
    )


def rotate_certificates(settings: Settings | None = None) -> tuple[str, ...]:
    """``dev certs rotate``: new leaf certificates from the same CA; running pieces re-read theirs.

    PostgreSQL reloads (``pg_ctl reload``); the broker updates its listener keystore as a
    dynamic config. Clients already connected keep their sessions; new ones see the new
    certificates. Clients re-read their own files when they next connect.

    Returns:
        Notes, one per thing done.
    """
    settings = settings if settings is not None else Settings()
    notes: list[str] = []
    with locked(settings.home):
        written = certs.rotate(settings.tls_dir, user=settings.postgres_user, netns_ip=settings.kafka_netns_ip)
        notes.append(f"issued {', '.join(written)} in {settings.tls_dir}")
        if not settings.tls:
            notes.append("EVENTRAY_TLS is off: the pieces do not use these certificates")
            return tuple(notes)
        if settings.database_url is None and postgres.reload_certificates(settings):
            notes.append("PostgreSQL reloaded its certificate")
        if settings.kafka_bootstrap is None and kafka.status(settings).state == "running":
            kafka.reload_certificates(settings)
            notes.append("Kafka reloaded its keystore")
    return tuple(notes)


def _waiting_text(waiting: set[str], current: dict[str, PieceStatus]) -> str:
    if not waiting:
        return "ready"
    verbs = [f"{n} ({'checking' if current[n].state == 'running' else 'starting'})"
             for n in PIECES if n in waiting]
    return "waiting for " + ", ".join(verbs)


def _migrate(dsn: str) -> tuple[str, ...]:
    try:
        migrations = importlib.import_module("eventray.platform.migrations")
    except ModuleNotFoundError as e:
        if e.name != "eventray.platform.migrations":
            raise
        log.info("no eventray.platform.migrations module yet; skipping migrations")
        return ()
    try:
        applied = migrations.migrate(dsn)
    except Exception as e:
        raise StackError(f"running the PostgreSQL migrations against {dsn} failed: {e}") from e
    return tuple(applied or ())


def down(settings: Settings | None = None, *, purge: bool = False) -> tuple[str, ...]:
    """Stop the pieces the dev stack started (Ray, then Kafka, then PostgreSQL).

    Args:
        settings: configured settings; ``Settings()`` when omitted.
        purge: also delete the stack's data (Kafka log, PostgreSQL cluster, Ray temp dir and
            the state file); the downloaded jars stay.

    Returns:
        Names of the pieces that were running and are now stopped.
    """
    settings = settings if settings is not None else Settings()
    stopped = []
    with locked(settings.home):
        for name in reversed(PIECES):
            module = _MODULES[name]
            if module.status(settings).state == "external":
                continue
            if module.stop(settings):
                stopped.append(name)
        if toxiproxy.stop(settings):  # the chaos proxies in front of the broker and PostgreSQL
            stopped.append("toxiproxy")
        if purge:
            _purge(settings)
    return tuple(stopped)


def _purge(settings: Settings) -> None:
    state = StackState.load(settings.home)
    for mount in smallfs.release_all(settings):  # EVENTRAY_DATA_FS_MB's filesystems, their data with them
        log.info("unmounted %s", mount)
    doomed = [settings.data_dir, rayhead.temp_dir(settings), rayhead.haproxy_dir(settings), settings.home / "run"]
    if settings.database_url is None:
        cdir = postgres.cluster_dir(settings, state)
        doomed.append(cdir)
        if cdir.parent.parent == Path("/var/lib/eventray"):
            doomed.append(cdir.parent)
    for path in doomed:
        log.info("purging %s", path)
        shutil.rmtree(path, ignore_errors=True)
    state_file(settings.home).unlink(missing_ok=True)


def render(report: StackReport, console: Console, *, title: str = "eventray dev stack") -> None:
    """Print a report as a table."""
    table = Table(title=title, title_justify="left")
    for col in ("piece", "state", "address", "pid", "note"):
        table.add_column(col, overflow="fold")
    style = {"running": "green", "stopped": "red", "external": "cyan"}
    for p in report.pieces:
        state = p.state + (" (started)" if p.started else "")
        table.add_row(p.name, f"[{style[p.state]}]{state}[/]", p.address or "", str(p.pid or ""),
                      p.detail)
    console.print(table)
    if report.migrations:
        console.print(f"applied migrations: {', '.join(report.migrations)}")
    for note in report.notes:
        console.print(note)
    if report.seconds:
        console.print(f"took {report.seconds:.1f}s")
