"""``eventray chaos ...``: one fault at a time, or the seeded monkey.

Acts on the dev stack of the environment (``EVENTRAY_HOME``, ports): only on what that stack
started. Point it at a separate stack for experiments (see docs/operations.md).
"""

from __future__ import annotations

import argparse

from rich.console import Console

from eventray.platform.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("chaos", help="inject faults into the local dev stack; the chaos monkey")
    sub = p.add_subparsers(dest="fault", required=True, metavar="FAULT")
    s = sub.add_parser("kill-shard", help="SIGKILL a shard actor (random when N is omitted)")
    s.add_argument("index", nargs="?", type=int)
    s = sub.add_parser("kill-runner", help="SIGKILL a runner of projection NAME (or the actor NAME)")
    s.add_argument("name")
    s = sub.add_parser("kill-coordinator", help="SIGKILL a saga coordinator (random when N is omitted)")
    s.add_argument("index", nargs="?", type=int)
    s = sub.add_parser("pause-kafka", help="SIGSTOP the broker for SECONDS, then SIGCONT")
    s.add_argument("seconds", type=float)
    sub.add_parser("restart-kafka", help="stop and start the broker")
    sub.add_parser("restart-postgres", help="stop (fast) and start PostgreSQL")
    s = sub.add_parser("delay-kafka", help="delay the broker's traffic by MS (tc netem in the broker's namespace, or the stack's Toxiproxy)")
    s.add_argument("ms", type=int)
    s.add_argument("--for", dest="seconds", type=float, default=10.0, help="seconds (default 10)")
    s = sub.add_parser("monkey", help="seeded random faults under a workload, then the invariants")
    s.add_argument("--duration", type=float, default=60.0, help="seconds of faults (default 60)")
    s.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from eventray.platform.chaos import faults, monkey

    settings = Settings()
    console = Console(highlight=False)
    if args.fault == "monkey":
        report = monkey.run(settings, duration_s=args.duration, seed=args.seed, out=console.print)
        return 0 if report.ok else 1
    run = {
        "kill-shard": lambda: faults.kill_shard(settings, args.index),
        "kill-runner": lambda: faults.kill_runner(settings, args.name),
        "kill-coordinator": lambda: faults.kill_coordinator(settings, args.index),
        "pause-kafka": lambda: faults.pause_kafka(settings, args.seconds),
        "restart-kafka": lambda: faults.restart_kafka(settings),
        "restart-postgres": lambda: faults.restart_postgres(settings),
        "delay-kafka": lambda: faults.delay_kafka(settings, args.ms, args.seconds),
    }[args.fault]
    result = run()
    console.print(f"{result.kind} {result.target}: recovered after {result.recovered_s:.2f}s {result.detail}")
    return 0
