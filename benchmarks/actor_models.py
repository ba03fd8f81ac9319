"""The three concurrency models eventray's partitioned actors used, measured side by side.

Before the one runtime, shards were async actors (blocking calls on threads), projection runners
sync actors (a thread per partition), saga coordinators async actors with a high
``max_concurrency``. Each variant here does what those actors do: a control call answered while
partitions work (``owned``/``describe`` during a batch), and a work call that holds a blocking
section (a Kafka commit, ~1 ms) and then answers. Measured from a driver on the dev head:

* ``call_p50_ms``: one control call at a time while every partition's loop is busy;
* ``work_calls_per_s`` at c=1 and c=64 concurrent callers (each call sleeps 1 ms in its blocking section);
* ``idle_cpu_ms_per_s``: CPU the actor process burns while nothing happens (from /proc).

``python -m benchmarks.actor_models [--quick]``; writes ``benchmarks/results/actor_models.json``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from benchmarks._common import median, parser, percentile, print_table, write_results

PARTITIONS = 4


def _cpu_ms(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _variants() -> dict[str, Any]:
    import ray

    def busy_loops(stop: threading.Event) -> list[threading.Thread]:
        # each partition's loop: long-polls (a blocking wait), then applies a short batch
        def loop() -> None:
            while not stop.is_set():
                stop.wait(0.05)
                sum(range(2_000))

        threads = [threading.Thread(target=loop, daemon=True) for _ in range(PARTITIONS)]
        for t in threads:
            t.start()
        return threads

    @ray.remote(num_cpus=0)
    class SyncThreads:  # the old runner: a sync actor, one thread per partition
        def __init__(self) -> None:
            self.stop = threading.Event()
            busy_loops(self.stop)

        def owned(self) -> dict[str, Any]:
            return {"partitions": list(range(PARTITIONS)), "serving": True}

        def work(self) -> int:
            time.sleep(0.001)
            return 1

        def pid(self) -> int:
            return os.getpid()

    @ray.remote(num_cpus=0, max_concurrency=64)
    class ThreadedSync(SyncThreads.__ray_actor_class__):  # type: ignore[name-defined,misc]
        pass

    @ray.remote(num_cpus=0)
    class AsyncActor:  # the shard and the coordinator: one loop, blocking sections on threads
        def __init__(self) -> None:
            self.stop = threading.Event()
            busy_loops(self.stop)

        async def owned(self) -> dict[str, Any]:
            return {"partitions": list(range(PARTITIONS)), "serving": True}

        async def work(self) -> int:
            await asyncio.to_thread(time.sleep, 0.001)
            return 1

        async def pid(self) -> int:
            return os.getpid()

    @ray.remote(num_cpus=0, max_concurrency=10_000)
    class AsyncHighConcurrency(AsyncActor.__ray_actor_class__):  # type: ignore[name-defined,misc]
        pass

    return {"sync actor + threads (old runner)": SyncThreads, "sync actor, max_concurrency=64": ThreadedSync,
            "async actor (shard, new runner)": AsyncActor,
            "async actor, max_concurrency=10000 (old coordinator)": AsyncHighConcurrency}


def measure(cls: Any, *, calls: int, idle_s: float) -> dict[str, Any]:
    import ray

    actor = cls.remote()
    pid = ray.get(actor.pid.remote())
    ray.get(actor.owned.remote())
    latencies = []
    for _ in range(calls):
        t0 = time.perf_counter()
        ray.get(actor.owned.remote())
        latencies.append((time.perf_counter() - t0) * 1000)
    rates = {}
    for c in (1, 64):
        n = calls * 2
        t0 = time.perf_counter()
        pending = []
        for _ in range(n):
            pending.append(actor.work.remote())
            if len(pending) >= c:
                ray.get(pending.pop(0))
        ray.get(pending)
        rates[c] = n / (time.perf_counter() - t0)
    before = _cpu_ms(pid)
    time.sleep(idle_s)
    idle = (_cpu_ms(pid) - before) / idle_s
    ray.kill(actor)
    return {"call_p50_ms": median(latencies), "call_p99_ms": percentile(latencies, 99),
            "work_calls_per_s_c1": rates[1], "work_calls_per_s_c64": rates[64], "idle_cpu_ms_per_s": idle}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    from eventray.platform.composition import connect_ray
    from eventray.platform.devstack.state import effective_settings

    connect_ray(effective_settings())
    calls = 300 if args.quick else 2_000
    rows = []
    for name, cls in _variants().items():
        row = {"model": name, **measure(cls, calls=calls, idle_s=3.0 if args.quick else 10.0)}
        rows.append(row)
    print_table("concurrency models of a partitioned actor", rows,
                ["model", "call_p50_ms", "call_p99_ms", "work_calls_per_s_c1", "work_calls_per_s_c64",
                 "idle_cpu_ms_per_s"])
    path = write_results("actor_models", {"rows": rows, "partitions": PARTITIONS, "calls": calls,
                                          "quick": args.quick})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
