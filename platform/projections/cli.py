"""``eventray replay NAME`` and ``eventray projections``."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from eventray.platform.cli import add_app_argument, load_runtime

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("replay", help="rebuild a projection beside the live one and switch to it")
    p.add_argument("name", help="projection name (see `eventray projections`)")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    p.add_argument("--keep-old", action="store_true", help="do not drop the old version's schema")
    add_app_argument(p)
    p.set_defaults(func=_replay)
    s = subparsers.add_parser("projections", help="list projections: version, offsets, lag, dead letters, status")
    add_app_argument(s)
    s.set_defaults(func=_projections)


def _replay(args: argparse.Namespace) -> int:
    from eventray.platform.projections.replay import replay

    rt = load_runtime(args)
    rt.app.projection(args.name)  # an unknown name fails here, naming the app's projections
    console = Console()
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>10,.0f} ev/s"), TextColumn("lag {task.fields[lag]:>8,}"),
        TextColumn("{task.fields[phase]}"), TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"replay {args.name}", total=None, rate=0.0, lag=0, phase="starting")

        def show(p: dict[str, Any]) -> None:
            progress.update(task, completed=p["done"], total=max(p["total"], 1), rate=p["events_per_s"],
                            lag=p["lag"], phase=p["phase"])

        report = replay(rt, args.name, on_progress=show, timeout_s=args.timeout, drop_old=not args.keep_old)
    console.print(
        f"{args.name}: v{report.new_version} is current (was {report.old_version or 'none'}); "
        f"{report.events:,} events in {report.catch_up_s:.1f}s = {report.events_per_s:,.0f} events/s"
    )
    return 0


def status(rt: Any) -> list[dict[str, Any]]:
    """Each version of the app's projections on its topic: status, with lag from the log's last
    stable offsets."""
    from eventray.platform.migrations import migrate
    from eventray.platform.projections.replay import LogEnds
    from eventray.platform.projections.store import ProjectionStore

    settings = rt.settings
    migrate(settings.dsn)
    store = ProjectionStore(settings.dsn)
    try:
        rows = store.status_rows()
    finally:
        store.close()
    heads: dict[tuple[str, int], dict[int, int]] = {}
    out = []
    for name, version, current, st, offsets, applied, dead, definition, reason, topic, partitions in rows:
        if topic != rt.topic or name not in rt.app.projections:
            continue
        offs = {int(k): int(v) for k, v in (offsets or {}).items()}
        key = (topic, partitions)
        if key not in heads:
            ends = LogEnds(settings.kafka_address, topic, partitions, tls=settings.tls_files())
            try:
                heads[key] = ends()
            finally:
                ends.close()
        lag = sum(max(0, h - offs.get(p, 0)) for p, h in heads[key].items())
        out.append({"name": name, "version": version, "current": current, "status": st, "offsets": offs,
                    "applied": int(applied or 0), "lag": lag, "dead_letters": int(dead), "topic": topic,
                    "definition_version": definition, "reason": reason})
    return out


def _projections(args: argparse.Namespace) -> int:
    rt = load_runtime(args)
    table = Table(title=f"projections of {rt.app.name} on {rt.topic} ({rt.settings.dsn.split('?', 1)[0].rsplit('/', 1)[-1]})")
    for col in ("name", "version", "current", "status", "offsets", "lag", "applied", "dead letters", "topic"):
        table.add_column(col)
    for r in status(rt):
        table.add_row(r["name"], f"v{r['version']}", "yes" if r["current"] else "", r["status"]
                      + (f" ({r['reason']})" if r["reason"] else ""),
                      " ".join(f"{p}:{o}" for p, o in sorted(r["offsets"].items())), f"{r['lag']:,}",
                      f"{r['applied']:,}", str(r["dead_letters"]), r["topic"])
    Console(width=200).print(table)
    return 0
