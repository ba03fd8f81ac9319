"""Structured logs: one JSON object per line, the same fields in every actor and replica.

Fields: ``ts`` (ISO 8601, UTC), ``level``, ``component`` (the logger name, e.g.
``eventray.shard``), ``actor`` (the Ray actor's name, or its class when unnamed; absent in a
plain process), ``pid``, ``msg``, and when the line is about requests, ``correlation_id`` (one)
or ``correlation_ids`` (a batch). Pass them with ``extra={"correlation_id": ...}``.

Ray writes an actor's stderr to ``<session>/logs/worker-*.err``; ``eventray logs`` reads those
files (and the stack's own logs) and filters by correlation id, see :mod:`.follow`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonLinesFormatter(logging.Formatter):
    """Formats a record as one JSON line (see the module docstring for the fields)."""

    def __init__(self, *, actor: str | None = None) -> None:
        super().__init__()
        self._actor = actor

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "component": record.name,
        }
        if self._actor:
            out["actor"] = self._actor
        out["pid"] = record.process
        out["msg"] = record.getMessage()
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def _actor_name() -> str | None:
    try:
        import ray

        if not ray.is_initialized():
            return None
        ctx = ray.get_runtime_context()
        if ctx.get_actor_id() is None:
            return None
        return ctx.get_actor_name() or type(ctx.current_actor).__name__
    except Exception:  # noqa: BLE001 - the actor name is a nicety; the line still gets logged
        return None


def configure(*, json_lines: bool = True, level: int = logging.INFO, actor: str | None = None) -> None:
    """Route the ``eventray`` loggers of this process to stderr as JSON lines.

    Call it first thing in an actor's or replica's constructor. Idempotent.

    Args:
        json_lines: False keeps the plain text format (``EVENTRAY_LOG_JSON=false``).
        level: the level of the ``eventray`` logger.
        actor: the name to put in ``actor``; the Ray actor's own name when omitted.
    """
    logger = logging.getLogger("eventray")
    logger.setLevel(level)
    for handler in list(logger.handlers):
        if getattr(handler, "_eventray", False):
            logger.removeHandler(handler)
    # The process's own stderr, not ``sys.stderr``: a Serve replica replaces that with a stream
    # that re-logs every write through Serve's logger and walks the stack for each line (12.7% of
    # a GraphQL replica's CPU under load, one line per request), and files it in Serve's replica
    # log instead of the worker-*.err file that `eventray logs` reads.
    handler = logging.StreamHandler(sys.__stderr__ or sys.stderr)
    handler._eventray = True  # type: ignore[attr-defined]
    if json_lines:
        handler.setFormatter(JsonLinesFormatter(actor=actor or _actor_name()))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
