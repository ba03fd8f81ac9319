"""``eventray dev up | down | status``."""

from __future__ import annotations

import argparse

from rich.console import Console

from eventray.platform.settings import Settings

from . import stack


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dev = subparsers.add_parser("dev", help="the local stack: PostgreSQL, Kafka, Ray")
    actions = dev.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("up", help="start what is not running (idempotent)").set_defaults(func=_up)
    down = actions.add_parser("down", help="stop what dev up started")
    down.add_argument("--purge", action="store_true",
                      help="also delete the stack's data (keeps the downloaded jars)")
    down.set_defaults(func=_down)
    actions.add_parser("status", help="show each piece").set_defaults(func=_status)


def _up(args: argparse.Namespace) -> int:
    console = Console()
    report = stack.up(Settings(), console=Console(stderr=True))
    stack.render(report, console)
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = stack.down(Settings(), purge=args.purge)
    Console().print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    report = stack.status(Settings())
    stack.render(report, Console())
    return 0
