"""What the dev stack decided at run time, persisted so every process agrees.

``dev up`` may have to move PostgreSQL to another port (the configured one was taken by a
foreign server) or its cluster to a directory the ``postgres`` user can reach. Those choices
live in ``<home>/devstack.json``; :func:`effective_settings` folds them into a
:class:`~eventray.platform.settings.Settings` so consumers never read the file themselves.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from eventray.platform.settings import Settings

PieceState = Literal["running", "stopped", "external"]


@dataclass(frozen=True)
class PieceStatus:
    """Where one piece of the stack (``postgres``, ``kafka``, ``ray``) stands.

    Attributes:
        name: the piece.
        state: ``running`` (started by the dev stack and ready), ``stopped``, or ``external``
            (an address is configured, the dev stack leaves it alone).
        address: what clients connect to.
        pid: the main process, when the dev stack runs it.
        started: True when this call started it (only set by ``up``).
        detail: a short human note (log file, data directory, ...).
    """

    name: str
    state: PieceState
    address: str | None = None
    pid: int | None = None
    started: bool = False
    detail: str = ""


@dataclass
class StackState:
    """The dev stack's run-time choices (all optional: absent means "the configured default")."""

    postgres_port: int | None = None
    postgres_dir: str | None = None
    ray_address: str | None = None

    @classmethod
    def load(cls, home: Path) -> StackState:
        try:
            raw = json.loads(state_file(home).read_text())
        except (OSError, ValueError):
            return cls()
        return cls(**{k: raw.get(k) for k in cls.__dataclass_fields__})

    def save(self, home: Path) -> None:
        """Write the whole state atomically (a temporary file of its own, then a rename)."""
        home.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=home, prefix="devstack.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(asdict(self), indent=2) + "\n")
            os.replace(tmp, state_file(home))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def update(cls, home: Path, **fields: object) -> StackState:
        """Set ``fields`` in the state file, keeping the others; returns the new state.

        ``dev up`` starts the pieces on threads of one process (under the cross-process lock
        of :func:`locked`), and each records its own choices: the read-modify-write is
        serialised so that one piece's write never drops another's.
        """
        with _update_lock:
            state = cls.load(home)
            for name, value in fields.items():
                if name not in cls.__dataclass_fields__:
                    raise AttributeError(f"StackState has no field {name!r}")
                setattr(state, name, value)
            state.save(home)
            return state


_update_lock = threading.Lock()


def home_digest(settings: Settings, length: int) -> str:
    """The first ``length`` hex digits of a digest of the stack's home: a short name that stays
    the same for one stack and differs between stacks (temp dirs, mount tags, namespaces)."""
    return hashlib.sha256(str(settings.home.resolve()).encode()).hexdigest()[:length]


def state_file(home: Path) -> Path:
    return home / "devstack.json"


@contextmanager
def locked(home: Path) -> Iterator[None]:
    """Serialize ``up``/``down`` across processes (parallel test sessions share one stack)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "devstack.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def effective_settings(settings: Settings | None = None) -> Settings:
    """Settings with every service address filled in: the configured one, else the dev stack's.

    Use this wherever code needs to connect to the local stack: it accounts for a PostgreSQL
    port that ``dev up`` had to change. ``kafka_bootstrap``, ``database_url`` and
    ``ray_address`` are never ``None`` on the result.

    Args:
        settings: the configured settings; ``Settings()`` (from the environment) when omitted.
    """
    settings = settings if settings is not None else Settings()
    state = StackState.load(settings.home)
    update: dict[str, object] = {}
    if settings.database_url is None:
        port = state.postgres_port or settings.postgres_port
        update["postgres_port"] = port
        if settings.postgres_proxy:  # behind the chaos proxy, clients connect to it
            from .toxiproxy import postgres_proxy_port

            client_port = postgres_proxy_port(settings)
        else:
            client_port = port
        update["database_url"] = (
            f"postgresql://{settings.postgres_user}@127.0.0.1:{client_port}/{settings.postgres_db}"
        )
    if settings.kafka_bootstrap is None:
        update["kafka_bootstrap"] = settings.kafka_address
    if settings.ray_address is None:
        update["ray_address"] = state.ray_address or f"127.0.0.1:{settings.ray_port}"
    return settings.model_copy(update=update)
