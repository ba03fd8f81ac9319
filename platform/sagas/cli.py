"""``eventray sagas``: the in-flight and failed sagas, with their ages."""

from __future__ import annotations

import argparse
import asyncio
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sagas", help="list in-flight and failed sagas with their ages")
    p.add_argument("--older-than", type=float, default=0.0, metavar="SECONDS",
                   help="only in-flight sagas at least this old (failed ones are always listed)")
    p.add_argument("--saga", default="TransferMoney", help="saga name (default: TransferMoney)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from eventray.platform.sagas.composition import saga_client
    from eventray.platform.sagas.settings import SagaSettings
    from eventray.platform.settings import Settings

    settings, saga_settings = Settings(), SagaSettings()

    async def fetch() -> tuple[list, list]:
        client = saga_client(settings, saga_settings, saga=args.saga)
        return await client.stuck(int(args.older_than * 1000)), await client.describe()

    states, described = asyncio.run(fetch())
    now = time.time() * 1000
    table = Table(title=f"{args.saga} sagas in flight or needing attention ({len(states)})")
    for col in ("id", "status", "step", "attempt", "age", "from", "to", "amount", "reason"):
        table.add_column(col)
    for s in sorted(states, key=lambda s: s.requested_at_ms):
        table.add_row(s.transfer_id, s.status, s.step, str(s.attempt), f"{(now - s.requested_at_ms) / 1000:.1f}s",
                      s.from_account, s.to_account, str(s.amount), s.reason or "")
    console = Console()
    console.print(table)
    for d in described:
        console.print(f"saga partition {d['index']}: {d['sagas']} sagas, {d['live']} live, "
                      f"by status {dict(d['by_status'])}, resyncs {d['resyncs']}")
    return 0
