"""``eventray logs --correlation ID`` and ``eventray metrics``."""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from eventray.platform.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("logs", help="follow one request through the local stack's logs")
    p.add_argument("--correlation", required=True, metavar="ID", help="the request / correlation id")
    p.add_argument("--json", action="store_true", help="print the raw JSON lines")
    p.set_defaults(func=_logs)
    m = subparsers.add_parser("metrics", help="the one Prometheus URL to scrape, and eventray's current values")
    m.add_argument("--url", action="store_true", help="print only the URL")
    m.set_defaults(func=_metrics)


def _logs(args: argparse.Namespace) -> int:
    from eventray.platform.observability.follow import follow

    console = Console(highlight=False)
    lines = follow(Settings(), args.correlation)
    for doc in lines:
        if args.json:
            print(json.dumps(doc))
        else:
            console.print(f"{doc.get('ts', '?')} {doc.get('level', ''):7s} {doc.get('component', ''):22s} "
                          f"{doc.get('actor') or '-':34s} {doc.get('msg', '')}", markup=False)
    if not lines:
        console.print(f"no log line mentions correlation id {args.correlation}")
        return 1
    return 0


def _metrics(args: argparse.Namespace) -> int:
    import httpx

    from eventray.platform.devstack.state import effective_settings
    from eventray.platform.observability.metrics import scrape_url

    url = scrape_url(effective_settings(Settings()))
    if args.url:
        print(url)
        return 0
    print(f"# scrape: {url}")
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith(("ray_eventray_", "ray_serve_deployment_replica_healthy")):
            print(line)
    return 0
