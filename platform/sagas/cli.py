"""``eventray sagas``: the in-flight sagas and those needing attention, with their ages."""

from __future__ import annotations

import argparse
import asyncio
import time


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from eventray.platform.cli import add_app_argument

    p = subparsers.add_parser("sagas", help="list in-flight sagas and those needing attention, with their ages")
    p.add_argument("--older-than", type=float, default=0.0, metavar="SECONDS",
                   help="only in-flight sagas at least this old (those needing attention are always listed)")
    p.add_argument("--saga", default=None, help="saga name (default: every saga of the app)")
    add_app_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import msgspec
    from rich.console import Console
    from rich.table import Table

    from eventray.platform.cli import load_runtime
    from eventray.platform.sagas.composition import saga_client
    from eventray.platform.sagas.settings import SagaSettings

    rt, saga_settings = load_runtime(args), SagaSettings()
    names = [args.saga] if args.saga else list(rt.app.sagas)
    console = Console()
    if not names:
        console.print(f"the app {rt.app.name!r} declares no sagas")
        return 0

    async def fetch(name: str) -> tuple[list, list, object]:
        client = saga_client(rt, saga_settings, name)
        return await client.stuck_entries(int(args.older_than * 1000)), await client.describe(), client

    for name in names:
        entries, described, client = asyncio.run(fetch(name))
        now = time.time() * 1000
        table = Table(title=f"{name} sagas in flight or needing attention ({len(entries)})")
        for col in ("id", "status", "age", "state"):
            table.add_column(col)
        for saga_id, started_at_ms, state in entries:
            table.add_row(saga_id, client.status(state), f"{(now - started_at_ms) / 1000:.1f}s",  # type: ignore[attr-defined]
                          msgspec.json.encode(state).decode()[:160])
        console.print(table)
        for d in described:
            console.print(f"{name} saga partition {d['index']}: {d['sagas']} sagas, {d['live']} live, "
                          f"by status {dict(d['by_status'])}, resyncs {d['resyncs']}")
    return 0
