"""``eventray schema``, ``eventray serve`` and ``eventray token``.

* ``schema`` prints the executable schema's SDL (the committed file must match it).
* ``serve`` deploys the GraphQL app on the local Ray cluster with Serve (no ``deploy``
  config needed), after starting the shards.
* ``token`` mints a development token (HS256, dev secret) for GraphiQL or curl.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    subparsers.add_parser("schema", help="print the GraphQL schema (SDL)").set_defaults(func=_schema)
    p = subparsers.add_parser("serve", help="start the shards and deploy the GraphQL app on Ray Serve")
    p.add_argument("--replicas", type=int, default=None)
    p.set_defaults(func=_serve)
    t = subparsers.add_parser("token", help="mint a development bearer token (HS256)")
    t.add_argument("subject")
    t.add_argument("--role", choices=("admin", "teller", "customer"), default="customer")
    t.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    t.set_defaults(func=_token)


def _schema(args: argparse.Namespace) -> int:
    from eventray.serving.api.schema import printed_sdl

    sys.stdout.write(printed_sdl())
    return 0


def _serve(args: argparse.Namespace) -> int:
    from rich.console import Console

    from eventray.platform import composition
    from eventray.platform.devstack.state import effective_settings
    from eventray.serving import deployment
    from eventray.serving.settings import ServingSettings

    console = Console()
    settings = effective_settings()
    serving = ServingSettings()
    if args.replicas:
        serving = serving.model_copy(update={"replicas": args.replicas})
    with console.status("starting shards"):
        composition.start_shards(settings)
    with console.status("deploying the GraphQL app"):
        url = deployment.run(settings, serving)
    console.print(f"GraphQL and GraphiQL: [bold]{url}[/]")
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
