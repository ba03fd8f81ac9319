"""Rendering: the Jinja2 environment of the console's templates and the filters they use."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
#: the files `make console-assets` copies from npm into static/vendor/
VENDOR_FILES = ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css")
VENDOR_HINT = "make console-assets"


def missing_vendor_files(static: Path = STATIC) -> list[str]:
    """The vendored script files that are not in the package (a source tree that skipped the build step)."""
    return [name for name in VENDOR_FILES if not (static / "vendor" / name).is_file()]


def when(ms: Any) -> str:
    """A millisecond epoch timestamp as UTC ``YYYY-MM-DD HH:MM:SS.mmm``."""
    if ms is None or ms == "":
        return "-"
    try:
        stamp = dt.datetime.fromtimestamp(float(ms) / 1000, tz=dt.UTC)
    except (TypeError, ValueError, OverflowError):
        return str(ms)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d}"


def pretty(value: Any) -> str:
    """JSON, indented, for payloads and states (whatever is not JSON is shown as its text)."""
    if isinstance(value, str | bytes):
        return value if isinstance(value, str) else value.decode(errors="replace")
    try:
        return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def compact(value: Any, limit: int = 80) -> str:
    """A one-line JSON rendering of ``value``, cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def spark(values: Iterable[Any], width: int = 120, height: int = 24) -> str:
    """The ``points`` of an SVG polyline drawing ``values`` (numbers or ``(t, value)`` pairs)."""
    ys: list[float] = []
    for v in values or ():
        if isinstance(v, Mapping):
            v = v.get("lag", v.get("value"))
        elif isinstance(v, list | tuple):
            v = v[-1]
        try:
            ys.append(float(v))
        except (TypeError, ValueError):
            continue
    if not ys:
        return ""
    if len(ys) == 1:
        ys = ys * 2
    top = max(ys) or 1.0
    step = width / (len(ys) - 1)
    return " ".join(f"{i * step:.1f},{height - 1 - (y / top) * (height - 2):.1f}" for i, y in enumerate(ys))


def number(value: Any) -> str:
    """An integer with thousands separators; other values as they are."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if value % 1 else f"{int(value):,}"
    return str(value)


def resource(name: str, value: Any) -> str:
    """A Ray node resource: byte amounts (``memory``, ``object_store_memory``) in GiB."""
    if "memory" in name and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value / 2**30:,.1f} GiB"
    return number(value)


def environment() -> jinja2.Environment:
    """The template environment (autoescaped HTML; templates are read once and cached)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html"]),
                             trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    env.filters.update(when=when, pretty=pretty, compact=compact, spark=spark, number=number)
    env.globals["resource"] = resource
    env.tests["mapping"] = lambda v: isinstance(v, Mapping)
    return env
