"""Follow one request through the local stack's logs by its correlation id.

Reads the JSON lines of every actor and replica (Ray's ``<session>/logs/worker-*.err|out``
and Serve's logs) and of the stack's own log folder, keeps the lines whose
``correlation_id`` is the id or whose ``correlation_ids`` contain it, and orders them by time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eventray.platform.settings import Settings


def log_files(settings: Settings) -> list[Path]:
    """The log files of the stack of ``settings``: Ray's current session, then the stack's own."""
    from eventray.platform.devstack import rayhead

    files: list[Path] = []
    session = rayhead.temp_dir(settings) / "session_latest" / "logs"
    if session.exists():
        files += sorted(p for p in session.rglob("*") if p.is_file() and p.suffix in (".err", ".out", ".log"))
    if settings.logs_dir.exists():
        files += sorted(p for p in settings.logs_dir.glob("*.log") if p.is_file())
    return files


def _lines(path: Path, needle: bytes) -> Iterator[dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            for raw in f:
                if needle not in raw:
                    continue
                start = raw.find(b"{")
                if start < 0:
                    continue
                try:
                    doc = json.loads(raw[start:])
                except ValueError:
                    continue
                if isinstance(doc, dict):
                    doc.setdefault("file", str(path))
                    yield doc
    except OSError:
        return


def follow(settings: Settings, correlation_id: str) -> list[dict[str, Any]]:
    """Every JSON log line about ``correlation_id``, in time order."""
    needle = correlation_id.encode()
    found = []
    for path in log_files(settings):
        for doc in _lines(path, needle):
            if doc.get("correlation_id") == correlation_id or correlation_id in (doc.get("correlation_ids") or ()):
                found.append(doc)
    return sorted(found, key=lambda d: str(d.get("ts", "")))
