"""What the stack costs while nothing happens: CPU of the whole machine, and by process kind.

Run it on the stack ``make demo`` leaves running, once the demo has ended (nothing sends
commands). Over the window it reads ``/proc/stat`` (the machine) and ``/proc/<pid>/stat`` (every
process) at the start and the end, and groups processes by kind: Ray actors by their class
(``ray::ProjectionRunnerActor``), Serve replicas by deployment, Kafka, PostgreSQL, Ray's own
daemons. ``idle_cpu_share`` is the busy share of all cores over the window (1.0 = every core busy).

``python -m benchmarks.idle [--quick]`` (10 s; 30 s without); writes ``benchmarks/results/idle.json``.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks._common import parser, print_table, write_results

_TICK = os.sysconf("SC_CLK_TCK")
_REPLICA = re.compile(r"ray::ServeReplica:([^:\s]+):(\S+)")


def machine_ticks() -> tuple[int, int]:
    """``(busy, total)`` jiffies of all cores since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - idle, total


def process_ticks() -> dict[int, tuple[str, int]]:
    """``{pid: (kind, user+system jiffies)}`` of every process readable now."""
    out: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        out[int(entry.name)] = (kind_of(comm, cmdline), int(rest[11]) + int(rest[12]))
    return out


def kind_of(comm: str, cmdline: str) -> str:
    """A readable kind for a process of the stack (its command line's telling part)."""
    if m := _REPLICA.search(cmdline):
        return f"serve replica {m.group(1)}:{m.group(2)}"
    if cmdline.startswith("ray::"):  # an actor's title names the method it runs now: drop that
        return cmdline.split()[0].split(".", 1)[0]
    if "kafka.Kafka" in cmdline or "kafka-server" in cmdline:
        return "kafka broker"
    if comm.startswith("postgres") or "postgres" in cmdline.split(" ", 1)[0]:
        return "postgresql"
    for daemon in ("gcs_server", "raylet", "dashboard", "log_monitor", "monitor.py", "runtime_env_agent",
                   "dashboard_agent", "ray_client_server"):
        if daemon in cmdline:
            return f"ray {daemon.removesuffix('.py')}"
    return comm


def measure(window_s: float) -> dict[str, Any]:
    """The busy share of the machine over ``window_s``, and CPU ms/s by process kind."""
    busy0, total0 = machine_ticks()
    procs0 = process_ticks()
    t0 = time.monotonic()
    time.sleep(window_s)
    elapsed = time.monotonic() - t0
    busy1, total1 = machine_ticks()
    procs1 = process_ticks()
    by_kind: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for pid, (kind, ticks) in procs1.items():
        before = procs0.get(pid)
        if before is None:
            continue  # started inside the window: its total is not this window's
        used = ticks - before[1]  # the same process, whatever its title says now
        by_kind[kind] += used * 1000 / _TICK / elapsed
        count[kind] += 1
    rows = sorted(({"kind": k, "processes": count[k], "cpu_ms_per_s": round(v, 1)} for k, v in by_kind.items()
                   if v > 0), key=lambda r: -r["cpu_ms_per_s"])
    return {"window_s": round(elapsed, 2), "cores": os.cpu_count(),
            "idle_cpu_share": round((busy1 - busy0) / max(1, total1 - total0), 4), "by_kind": rows}


def main() -> None:
    args = parser(__doc__.split("\n", 1)[0]).parse_args()
    result = measure(10.0 if args.quick else 30.0)
    print_table(f"idle CPU over {result['window_s']}s: {result['idle_cpu_share']:.1%} of {result['cores']} cores",
                result["by_kind"][:25], ["kind", "processes", "cpu_ms_per_s"])
    write_results("idle", result)


if __name__ == "__main__":
    main()
