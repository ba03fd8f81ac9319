"""``eventray dev up | down | status``."""

from __future__ import annotations

import argparse

from rich.console import Console

from eventray.platform.settings import Settings

from . import certs, stack


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dev = subparsers.add_parser("dev", help="the local stack: PostgreSQL, Kafka, Ray")
    actions = dev.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("up", help="start what is not running (idempotent)").set_defaults(func=_up)
    down = actions.add_parser("down", help="stop what dev up started")
    down.add_argument("--purge", action="store_true",
                      help="also delete the stack's data (keeps the downloaded jars)")
    down.set_defaults(func=_down)
    actions.add_parser("status", help="show each piece").set_defaults(func=_status)
    tls = actions.add_parser("certs", help="the dev CA and certificates in <home>/tls (EVENTRAY_TLS)")
    tls.add_argument("what", nargs="?", choices=("ensure", "rotate"), default="ensure",
                     help="ensure: make what is missing or expiring (the default); rotate: new leaf "
                     "certificates from the same CA, picked up by the running pieces")
    tls.set_defaults(func=_certs)


def _up(args: argparse.Namespace) -> int:
    console = Console()
    report = stack.up(Settings(), console=Console(stderr=True))
    stack.render(report, console)
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = stack.down(Settings(), purge=args.purge)
    Console().print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _certs(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.what == "rotate":
        for note in stack.rotate_certificates(settings):
            Console().print(note)
        return 0
    made = certs.ensure_for(settings)
    Console().print(f"issued {', '.join(made)} in {settings.tls_dir}" if made
                    else f"the certificates in {settings.tls_dir} are current")
    return 0


def _status(args: argparse.Namespace) -> int:
    report = stack.status(Settings())
    stack.render(report, Console())
    return 0
