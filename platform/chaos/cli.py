"""``eventray chaos ...``: one fault at a time, or the seeded monkey.

Acts on the dev stack of the environment (``EVENTRAY_HOME``, ports): only on what that stack
started. Point it at a separate stack for experiments (see docs/operations.md). The faults on
actors and the monkey touch an app (its topic, its projections, sagas and workload): they take
``--app``.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from eventray.platform.cli import add_app_argument, load_runtime
from eventray.platform.errors import ConfigurationError
from eventray.platform.settings import Settings

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("chaos", help="inject faults into the local dev stack; the chaos monkey")
    sub = p.add_subparsers(dest="fault", required=True, metavar="FAULT")
    s = sub.add_parser("kill-shard", help="SIGKILL a shard actor (random when N is omitted)")
    s.add_argument("index", nargs="?", type=int)
    add_app_argument(s)
    s = sub.add_parser("kill-runner", help="SIGKILL a runner of projection NAME (or the actor NAME)")
    s.add_argument("name")
    s.add_argument("--version", type=int, default=None, help="only that version's runners (default: any)")
    add_app_argument(s)
    s = sub.add_parser("oom-runner", help="drive a runner of projection NAME (or the actor NAME) past a memory "
                       "limit (a memory cgroup of its own, root) until the kernel kills it")
    s.add_argument("name")
    s.add_argument("--version", type=int, default=None, help="only a runner of this version of the projection")
    s.add_argument("--limit-mb", type=int, default=32,
                   help="MiB of new memory it may take; it is driven to twice that (default 32)")
    add_app_argument(s)
    s = sub.add_parser("kill-coordinator", help="SIGKILL a saga coordinator (random when N is omitted)")
    s.add_argument("index", nargs="?", type=int)
    s.add_argument("--saga", default=None, help="saga name (default: the app's only saga)")
    add_app_argument(s)
    s = sub.add_parser("pause-kafka", help="SIGSTOP the broker for SECONDS, then SIGCONT")
    s.add_argument("seconds", type=float)
    sub.add_parser("restart-kafka", help="stop and start the broker")
    sub.add_parser("restart-postgres", help="stop (fast) and start PostgreSQL")
    s = sub.add_parser("delay-kafka", help="delay the broker's traffic by MS (tc netem in the broker's namespace, or the stack's Toxiproxy)")
    s.add_argument("ms", type=int)
    s.add_argument("--for", dest="seconds", type=float, default=10.0, help="seconds (default 10)")
    s = sub.add_parser("reset-kafka", help="reset every client connection to the broker for SECONDS (the stack's Toxiproxy)")
    s.add_argument("seconds", type=float, nargs="?", default=5.0, help="seconds (default 5)")
    s = sub.add_parser("loss-kafka", help="lose the data of a share of client connections to the broker for "
                       "SECONDS, each closed after 2 s (the stack's Toxiproxy)")
    s.add_argument("seconds", type=float, nargs="?", default=8.0, help="seconds (default 8)")
    s.add_argument("--share", type=float, default=0.5, help="share of connections, 0-1 (default 0.5)")
    s = sub.add_parser("outage-postgres", help="stop PostgreSQL for SECONDS while commands go on, then start it")
    s.add_argument("seconds", type=float, nargs="?", default=60.0, help="seconds (default 60)")
    s = sub.add_parser("partition-postgres", help="cut every client connection to PostgreSQL for SECONDS and "
                       "refuse new ones (the stack's Toxiproxy in front of it); the server runs on")
    s.add_argument("seconds", type=float, nargs="?", default=10.0, help="seconds (default 10)")
    s = sub.add_parser("disk-full-kafka", help="fill the broker's log directory (the stack's small filesystem, "
                       "EVENTRAY_DATA_FS_MB) for SECONDS, then free it and start the broker if it stopped")
    s.add_argument("seconds", type=float, nargs="?", default=10.0, help="seconds (default 10)")
    s = sub.add_parser("disk-full-postgres", help="fill PostgreSQL's data directory (the stack's small filesystem, "
                       "EVENTRAY_DATA_FS_MB) for SECONDS, then free it and start the server if it stopped")
    s.add_argument("seconds", type=float, nargs="?", default=10.0, help="seconds (default 10)")
    s = sub.add_parser("starve-shard", help="let shard N (random when omitted) run only a share of the time for "
                       "SECONDS (SIGSTOP/SIGCONT bursts)")
    s.add_argument("index", nargs="?", type=int)
    s.add_argument("--for", dest="seconds", type=float, default=10.0, help="seconds (default 10)")
    s.add_argument("--share", type=float, default=0.1, help="share of each 100 ms it runs, 0-1 (default 0.1)")
    add_app_argument(s)
    s = sub.add_parser("kill-replica", help="SIGKILL a GraphQL ingress replica (Serve starts another)")
    s.add_argument("--deployment", default="GraphQLIngress", help="the Serve deployment (default GraphQLIngress)")
    add_app_argument(s)
    s = sub.add_parser("monkey", help="seeded random faults under the app's workload, then the invariants")
    s.add_argument("--duration", type=float, default=60.0, help="seconds of faults (default 60)")
    s.add_argument("--seed", type=int, default=1)
    add_app_argument(s)
    p.set_defaults(func=_main)


def _saga(rt: Any, name: str | None) -> str:
    """The saga ``--saga`` names (checked against the app), else the app's only one."""
    if name is not None:
        return str(rt.app.saga(name).name)
    if len(rt.app.sagas) != 1:
        raise ConfigurationError(f"app {rt.app.name} declares {len(rt.app.sagas)} sagas "
                                 f"({', '.join(sorted(rt.app.sagas)) or 'none'}); name one with --saga")
    return str(next(iter(rt.app.sagas)))


def _kill_replica(settings: Settings, rt: Any, deployment: str) -> Any:
    """kill-replica against the ingress of the app of ``rt`` (this environment's ServingSettings:
    URL, Serve application, TLS)."""
    from eventray.platform.chaos import faults
    from eventray.platform.chaos.monkey import ingress_of

    ingress = ingress_of(rt)
    return faults.kill_replica(settings, app_name=ingress.app_name, deployment=deployment,
                               health_url=ingress.health_url, verify=ingress.verify)


def _main(args: argparse.Namespace) -> int:
    from eventray.platform.chaos import faults, monkey

    settings = Settings()  # configured: a fault refuses anything this stack did not start
    console = Console(highlight=False)
    if args.fault == "monkey":
        report = monkey.run(load_runtime(args), settings, duration_s=args.duration, seed=args.seed,
                            out=console.print)
        return 0 if report.ok else 1
    if args.fault in ("kill-shard", "kill-runner", "kill-coordinator", "starve-shard", "oom-runner"):
        rt = load_runtime(args)
        if args.fault == "kill-shard":
            result = faults.kill_shard(settings, args.index, topic=rt.topic)
        elif args.fault == "starve-shard":
            result = faults.starve_shard(settings, args.seconds, args.index, topic=rt.topic, share=args.share)
        elif args.fault in ("kill-runner", "oom-runner"):
            if not args.name.startswith("projection:"):
                rt.app.projection(args.name)  # an unknown name fails here, naming the app's projections
            if args.fault == "kill-runner":
                result = faults.kill_runner(settings, args.name, topic=rt.topic, version=args.version)
            else:
                result = faults.oom_runner(settings, args.name, topic=rt.topic, version=args.version,
                                           limit_mb=args.limit_mb)
        else:
            result = faults.kill_coordinator(settings, _saga(rt, args.saga), args.index, topic=rt.topic)
    else:
        result = {
            "pause-kafka": lambda: faults.pause_kafka(settings, args.seconds),
            "restart-kafka": lambda: faults.restart_kafka(settings),
            "restart-postgres": lambda: faults.restart_postgres(settings),
            "delay-kafka": lambda: faults.delay_kafka(settings, args.ms, args.seconds),
            "reset-kafka": lambda: faults.reset_kafka(settings, args.seconds),
            "loss-kafka": lambda: faults.loss_kafka(settings, args.seconds, args.share),
            "outage-postgres": lambda: faults.outage_postgres(settings, args.seconds),
            "partition-postgres": lambda: faults.partition_postgres(settings, args.seconds),
            "disk-full-kafka": lambda: faults.disk_full_kafka(settings, args.seconds),
            "disk-full-postgres": lambda: faults.disk_full_postgres(settings, args.seconds),
            "kill-replica": lambda: _kill_replica(settings, load_runtime(args), args.deployment),
        }[args.fault]()
    # one line however long (a pipe has no width to wrap at)
    console.print(f"{result.kind} {result.target}: recovered after {result.recovered_s:.2f}s {result.detail}",
                  soft_wrap=True)
    return 0
