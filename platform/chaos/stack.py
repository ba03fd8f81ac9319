"""A separate, small stack for chaos experiments, and the services a monkey needs on it.

Never point chaos at a stack other people use: bring one up with its own ``EVENTRAY_HOME``
and ports (``chaos_env``) and run the monkey there. ``up`` starts the dev stack, the app's
shards, what the app's chaos workload needs (``prepare(rt)`` beside its factory, see
:mod:`eventray.platform.chaos.monkey`: for the bank, ``account_balances`` and TransferMoney
coordinators with the rule scorer) and optionally the app's GraphQL application on Serve.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console

from eventray.platform.settings import Settings


def chaos_env(home: Path, *, base: int = 29000, netns_ip: str | None = None) -> dict[str, str]:
    """``EVENTRAY_*`` variables of a separate stack in ``home`` with ports from ``base``."""
    env = {
        "EVENTRAY_HOME": str(home), "EVENTRAY_KAFKA_PORT": str(base + 92),
        "EVENTRAY_KAFKA_CONTROLLER_PORT": str(base + 93), "EVENTRAY_POSTGRES_PORT": str(base + 432),
        "EVENTRAY_RAY_PORT": str(base + 379), "EVENTRAY_RAY_CLIENT_SERVER_PORT": str(base + 1),
        "EVENTRAY_RAY_DASHBOARD_AGENT_PORT": str(base + 365), "EVENTRAY_RAY_METRICS_EXPORT_PORT": str(base + 80),
        "EVENTRAY_RAY_NUM_CPUS": "2", "EVENTRAY_HTTP_PORT": str(base + 800), "EVENTRAY_PARTITIONS": "2",
        "EVENTRAY_SHARDS": "2", "EVENTRAY_SNAPSHOT_INTERVAL_S": "1.0",
        # the ingress over HTTPS only (Serve's proxy and the direct-ingress replica ports), with
        # the certificate the stack's dev CA issues: the chaos suite's requests all go through it
        "EVENTRAY_HTTPS": "1",
        # clients reach PostgreSQL through the stack's Toxiproxy (partition-postgres)
        "EVENTRAY_POSTGRES_PROXY": "1",
    }
    if os.geteuid() == 0:  # disk-full-kafka / disk-full-postgres: the data on small filesystems it mounts
        env["EVENTRAY_DATA_FS_MB"] = "768"
    if netns_ip:  # delay-kafka with tc netem (root, a kernel with sch_netem)
        env["EVENTRAY_KAFKA_NETNS_IP"] = netns_ip
    else:  # delay-kafka with a Toxiproxy in front of the broker: any kernel
        env["EVENTRAY_KAFKA_DELAY_PROXY"] = "1"
    return env


def up(settings: Settings, *, app: str | None = None, graphql: bool = False,
       console: Console | None = None) -> dict[str, Any]:
    """Start the stack of ``settings`` and the services on it; returns effective settings and URLs.

    Args:
        settings: the stack's configured settings (:func:`settings_from`).
        app: the app's import path (default ``settings.app``, i.e. ``EVENTRAY_APP``, else the bank).
        graphql: also deploy the app's GraphQL application on Serve.
        console: where the dev stack reports its progress.
    """
    from eventray.platform import devstack
    from eventray.platform.chaos.monkey import stack_preparation
    from eventray.platform.composition import Runtime
    from eventray.platform.runtime.shards import start_shards

    report = devstack.up(settings, console=console or Console(stderr=True, quiet=True))
    rt = Runtime.load(report.settings, app=app)
    start_shards(rt)
    prepare = stack_preparation(rt)
    if prepare is not None:  # the workload's projections and sagas, with the policy it needs
        prepare(rt)
    out: dict[str, Any] = {"settings": rt.settings}
    if graphql:
        from eventray.serving import deployment
        from eventray.serving.settings import ServingSettings

        out["graphql"] = deployment.run(rt, ServingSettings(), wait_s=240)
    return out


def down(settings: Settings) -> None:
    """Stop the whole separate stack and delete its data."""
    from eventray.platform import devstack
    from eventray.platform.devstack import netns

    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    finally:
        devstack.down(settings, purge=True)
        netns.remove(settings)


def settings_from(env: dict[str, str]) -> Settings:
    """Settings for ``env`` (also exported to this process, so every helper agrees)."""
    os.environ.update(env)
    return Settings()


def main(argv: list[str] | None = None) -> int:
    """``python -m eventray.platform.chaos.stack up [--graphql] [--app M:A] | down`` for the stack of the environment."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="eventray.platform.chaos.stack")
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--graphql", action="store_true")
    parser.add_argument("--app", metavar="MODULE:ATTR", default=None,
                        help="the eventray.App to use (default: EVENTRAY_APP, else the bundled bank)")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.action == "down":
        down(settings)
        return 0
    out = up(settings, app=args.app, graphql=args.graphql)
    print(json.dumps({"graphql": out.get("graphql"), "kafka": out["settings"].kafka_address,
                      "dsn": out["settings"].dsn, "ray": out["settings"].ray_address,
                      "ca": str(out["settings"].tls_dir / "ca.crt")}))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
