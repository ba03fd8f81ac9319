"""``eventray schema``, ``eventray serve`` and ``eventray token``.

* ``schema`` prints the app's executable schema in SDL (for the bank, the committed
  ``serving/bank/schema.graphql`` must match it).
* ``serve`` starts the app's shards, projections and saga coordinators on the local Ray cluster
  and deploys its GraphQL app with Serve (``eventray deploy`` does the same on a cluster).
* ``token`` mints a development token (HS256, dev secret) for GraphiQL or curl.
"""

from __future__ import annotations

import argparse
import sys

from eventray.platform.cli import add_app_argument, load_runtime


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sc = subparsers.add_parser("schema", help="print the app's GraphQL schema (SDL)")
    add_app_argument(sc)
    sc.set_defaults(func=_schema)
    p = subparsers.add_parser("serve", help="start the app's actors and deploy its GraphQL app on Ray Serve")
    p.add_argument("--replicas", type=int, default=None)
    p.add_argument("--no-sagas", action="store_true", help="leave the saga coordinators out")
    add_app_argument(p)
    p.set_defaults(func=_serve)
    t = subparsers.add_parser("token", help="mint a development bearer token (HS256)")
    t.add_argument("subject")
    t.add_argument("--role", choices=("admin", "teller", "customer"), default="customer")
    t.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    t.set_defaults(func=_token)


def _schema(args: argparse.Namespace) -> int:
    from eventray.platform.settings import Settings
    from eventray.serving.api.schema import printed_sdl

    sys.stdout.write(printed_sdl(load_runtime(args, Settings())))  # no stack needed
    return 0


def _serve(args: argparse.Namespace) -> int:
    from rich.console import Console

    from eventray.platform.deploy.deploy import deploy
    from eventray.serving.api.schema import executable_schema
    from eventray.serving.settings import ServingSettings

    console = Console()
    rt = load_runtime(args)
    executable_schema(rt)  # a GraphQL extension that does not merge fails before anything starts
    serving = ServingSettings()
    if args.replicas:
        serving = serving.model_copy(update={"replicas": args.replicas})
    with console.status(f"starting {rt.app.name}") as st:
        report = deploy(rt, None, serving=serving, sagas=not args.no_sagas, strict=False,
                        progress=lambda what: st.update(f"starting {rt.app.name}: {what}"))
    for change in report.changes:
        console.print(f"  [green]changed[/] {change}", soft_wrap=True)
    console.print(f"GraphQL and GraphiQL: [bold]{report.graphql_url}[/]", soft_wrap=True)
    return 0


def _token(args: argparse.Namespace) -> int:
    from eventray.platform.errors import ConfigurationError
    from eventray.serving.api.principal import mint_token
    from eventray.serving.settings import ServingSettings

    serving = ServingSettings()
    if serving.hs256_secret is None:
        raise ConfigurationError("HS256 tokens are refused in production; use your identity provider")
    print(mint_token(args.subject, args.role, secret=serving.hs256_secret, audience=serving.jwt_audience,
                     ttl_s=args.ttl))
    return 0
