"""The ``eventray`` command.

Each sub-command lives in its own module, which exposes ``register(subparsers)``: it adds its
parser and sets ``func`` (taking the parsed namespace, returning an exit code) with
``parser.set_defaults(func=...)``. To add one, write the module and list it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from rich.console import Console

from eventray.platform.errors import EventrayError

#: modules with a ``register(subparsers)`` function, in help order
COMMANDS = (
    "eventray.platform.devstack.cli",
    "eventray.platform.scaffold",
    "eventray.platform.demo",
    "eventray.platform.projections.cli",
    "eventray.serving.cli",
    "eventray.platform.ml.cli",
    "eventray.platform.observability.cli",
    "eventray.platform.chaos.cli",
    "eventray.platform.deploy.cli",
    "eventray.platform.sagas.cli",
)


def add_app_argument(parser: argparse.ArgumentParser) -> None:
    """``--app package.module:attr``, for every command that touches a domain."""
    parser.add_argument("--app", metavar="MODULE:ATTR", default=None,
                        help="the eventray.App to use (default: EVENTRAY_APP, else the bundled bank)")


def load_runtime(args: argparse.Namespace, settings: object | None = None):  # -> Runtime
    """The runtime of the app ``--app`` names (else ``EVENTRAY_APP``), with the stack's effective
    settings. The current folder is importable, as with ``uvicorn main:app``."""
    import os

    from eventray.platform.composition import Runtime
    from eventray.platform.devstack.state import effective_settings

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    settings = settings if settings is not None else effective_settings()
    return Runtime.load(settings, app=getattr(args, "app", None))  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventray", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``eventray`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except EventrayError as e:
        Console(stderr=True).print(f"[bold red]error[/] ({e.code}): {e.message}", highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
