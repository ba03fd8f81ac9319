"""``eventray deploy`` and ``eventray status`` (a running Ray cluster; address from settings or --address)."""

from __future__ import annotations

import argparse
from pathlib import Path

from eventray.platform.cli import add_app_argument, load_runtime


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = subparsers.add_parser("deploy", help="place shards, projection runners, saga coordinators and the "
                              "GraphQL app on a running Ray cluster (idempotent)")
    d.add_argument("--address", help="Ray address (default: EVENTRAY_RAY_ADDRESS, else the dev head)")
    d.add_argument("--wheel", type=Path, help="a built eventray wheel (default: build one from this checkout)")
    d.add_argument("--no-serve", action="store_true", help="leave the Serve app out")
    d.add_argument("--no-sagas", action="store_true", help="leave the saga coordinators out")
    add_app_argument(d)
    d.set_defaults(func=_deploy)
    s = subparsers.add_parser("status", help="nodes, where each actor runs, Serve, projection and saga lag")
    s.add_argument("--address", help="Ray address (default: EVENTRAY_RAY_ADDRESS, else the dev head)")
    s.add_argument("--json", action="store_true", help="print JSON")
    add_app_argument(s)
    s.set_defaults(func=_status)


def _settings(address: str | None):  # -> Settings
    from eventray.platform.devstack.state import effective_settings

    settings = effective_settings()
    return settings.model_copy(update={"ray_address": address}) if address else settings


def _deploy(args: argparse.Namespace) -> int:
    from rich.console import Console

    from eventray.platform.deploy.deploy import deploy
    from eventray.platform.deploy.package import default_wheel, unpack
    from eventray.serving.settings import ServingSettings

    console = Console()
    rt = load_runtime(args, _settings(args.address))
    settings = rt.settings
    wheel = args.wheel or default_wheel(settings.home / "deploy" / "dist")
    package = unpack(wheel, settings.home / "deploy")
    app_dir = rt.job_env().get("py_modules", [None])[0]
    console.print(f"deploying {wheel.name} (sha256 {package.sha256[:12]}) with the app {settings.app}"
                  + (f" (its package {app_dir} ships beside it)" if app_dir else "")
                  + f" to {settings.ray_address or 'auto'}", soft_wrap=True)
    with console.status("deploying") as st:
        report = deploy(rt, package, serving=None if args.no_serve else ServingSettings(),
                        sagas=not args.no_sagas, progress=lambda what: st.update(f"deploying: {what}"))
    for change in report.changes:  # soft_wrap: one line per change, for people and for scripts alike
        console.print(f"  [green]changed[/] {change}", soft_wrap=True)
    if not report.changes:
        console.print("  nothing changed: the cluster already runs this deployment")
    if report.graphql_url:
        console.print(f"GraphQL: [bold]{report.graphql_url}[/]", soft_wrap=True)
    return 0


def _status(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from eventray.platform.deploy.status import cluster_status

    st = cluster_status(load_runtime(args, _settings(args.address)))
    console = Console()
    if args.json:
        console.print_json(json.dumps(st, default=str))
        return 0
    nodes = Table("node", "ip", "alive", "head", "resources", title="nodes")
    for n in st["nodes"]:
        nodes.add_row(n["node_id"], n["ip"], str(n["alive"]), str(n["head"]), str(n["resources"]))
    actors = Table("actor", "node", "pid", title="actors")
    for a in st["actors"]:
        actors.add_row(a["name"], f"{a['node']} ({a['node_id']})", str(a["pid"]))
    console.print(nodes, actors)
    console.print(f"serve: {st['serve']}")
    console.print(f"projection lag (records): {st['projections']}")
    console.print(f"saga coordinator lag (records): {st['sagas']}")
    return 0
