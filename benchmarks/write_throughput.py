"""Durable commands/s and latency through the command bus, against the `eventsourcing` library.

    python -m benchmarks.write_throughput [--quick] [--clients both|kafka-python|confluent-kafka]

The load: deposits spread over 10,000 accounts on 4 partitions, at 1, 16 and 256 concurrent
clients. eventray's clients are asyncio tasks on the command bus (each waits for its
command's Kafka commit); the peer's are threads on an `eventsourcing` Application with
repository get and save on PostgreSQL, snapshotting on. Both run here, now, on the same
PostgreSQL server. eventray runs once per Kafka client of its shard writers (kafka-python and
confluent-kafka, on topics of their own), side by side in the same run; ``vs_peer_by_concurrency``
divides each by the peer at the same concurrency. Writes benchmarks/results/write_throughput.json.

While eventray's c=256 runs write, the bank's three plain projections run on their projection
host (a database of the benchmark's own) and their lag is sampled every 100 ms, in seconds: for
each sample of the log's end, how long until every projection had applied up to it
(``lag_p99_s_under_write_load``).

What TLS costs (``tls_cost``; ``--no-tls-cost`` skips it): eventray's load again, with the default
Kafka client, on a companion Kafka and PostgreSQL that differ from the benchmark's stack only in
``EVENTRAY_TLS`` (``benchmarks/_companion.py``), in the same run; each concurrency with TLS on and
off, and their ratio.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

from benchmarks._common import median, parser, percentile, print_table, write_results
from eventray.platform.eventlog.writer import KAFKA_CLIENTS
from eventray.platform.settings import with_database

CONCURRENCY = (1, 16, 256)
PLAIN = ["account_balances", "account_activity", "user_directory"]
ACCOUNTS = 10_000
PARTITIONS = 4


async def _eventray_point(bus, accounts: list[str], concurrency: int, duration_s: float, seed: int) -> dict[str, Any]:
    from eventray.aggregates.account import Deposit

    latencies: list[float] = []
    failures = 0
    stop_at = time.perf_counter() + duration_s

    async def client(i: int) -> None:
        nonlocal failures
        rng = random.Random(seed * 1000 + i)
        while time.perf_counter() < stop_at:
            cmd = Deposit(aggregate_id=rng.choice(accounts), amount=rng.randint(1, 100))
            t0 = time.perf_counter()
            while True:
                out = await bus.send(cmd)
                if not out.retryable:
                    break
                await asyncio.sleep(0.01)
            if not out.ok:
                failures += 1
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"count": len(latencies), "elapsed_s": elapsed, "latencies": latencies, "failures": failures}


def _summary(system: str, concurrency: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["count"] / r["elapsed_s"] for r in runs]
    p50s = [percentile(r["latencies"], 50) * 1000 for r in runs]
    p99s = [percentile(r["latencies"], 99) * 1000 for r in runs]
    return {"system": system, "concurrency": concurrency, "cmds_per_s": median(rates),
            "p50_ms": median(p50s), "p99_ms": median(p99s), "runs": len(runs),
            "cmds_per_s_runs": [round(r, 1) for r in rates],
            "failures": sum(r.get("failures", 0) for r in runs)}


class LagSampler:
    """Projection lag in seconds, sampled on a thread: log end at t, applied by every projection at t'."""

    def __init__(self, rt: Any, names: list[str], every_s: float = 0.1) -> None:
        import threading

        self._rt, self._names, self._every = rt, names, every_s
        self._stop = threading.Event()
        self.lags: list[float] = []
        self.pending = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from eventray.platform.projections.replay import LogEnds
        from eventray.platform.projections.store import ProjectionStore

        s = self._rt.settings
        ends, store = LogEnds(s.kafka_address, self._rt.topic, s.partitions, tls=s.tls_files()), ProjectionStore(s.dsn)
        versions = store.current_versions(self._rt.topic, self._names)
        waiting: list[tuple[float, dict[int, int]]] = []
        drain_until = None
        try:
            while True:
                if drain_until is not None:
                    time.sleep(self._every)
                elif self._stop.wait(self._every):
                    drain_until = time.perf_counter() + 10.0  # the load ended: resolve the samples taken
                if drain_until is not None and (not waiting or time.perf_counter() > drain_until):
                    break
                now = time.perf_counter()
                if drain_until is None:
                    waiting.append((now, ends()))
                applied = [store.progress(n, v)[0] for n, v in versions.items()]
                done = time.perf_counter()
                still = []
                for t, head in waiting:
                    if all(o.get(p, 0) >= e for o in applied for p, e in head.items()):
                        self.lags.append(done - t)
                    else:
                        still.append((t, head))
                waiting = still
            self.pending = len(waiting)
        finally:
            ends.close()
            store.close()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        return {"samples": len(self.lags), "p50_s": percentile(self.lags, 50), "p99_s": percentile(self.lags, 99),
                "max_s": max(self.lags, default=float("nan")), "unapplied_at_end": self.pending}


async def run_eventray(rt, duration_s: float, repeats: int, progress,
                       lag: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from eventray.aggregates.account import OpenAccount
    from eventray.platform.runtime.shards import start_shards, stop_shards

    start_shards(rt)
    bus = rt.command_bus()
    accounts = [f"bench-{i}" for i in range(ACCOUNTS)]
    outs = await bus.send_many([OpenAccount(aggregate_id=a, owner_id="bench", currency="EUR") for a in accounts])
    bad = [o for o in outs if not o.ok]
    if bad:
        raise RuntimeError(f"could not open the benchmark accounts: {bad[0]}")
    if lag is not None:
        from eventray.platform.projections.ensure import ensure_projections

        await asyncio.to_thread(ensure_projections, rt, names=PLAIN)
    rows = []
    for c in CONCURRENCY:
        await _eventray_point(bus, accounts, c, min(1.0, duration_s), seed=0)  # warm-up
        sampler = LagSampler(rt, PLAIN) if lag is not None and c == CONCURRENCY[-1] else None
        runs = []
        for r in range(repeats):
            runs.append(await _eventray_point(bus, accounts, c, duration_s, seed=r + 1))
            progress()
        if sampler is not None and lag is not None:
            lag.update(sampler.stop())
        rows.append({**_summary("eventray", c, runs), "kafka_client": rt.settings.kafka_client})
    stop_shards(rt)
    return rows


def run_peer(dsn: str, duration_s: float, repeats: int, progress) -> list[dict[str, Any]]:
    from benchmarks._peer_eventsourcing import drop_schema, make_bank, run_load

    rows = []
    schema = f"bench_peer_{uuid.uuid4().hex[:8]}"
    try:
        for c in CONCURRENCY:
            bank = make_bank(dsn, schema, pool_size=min(c, 64))
            if c == CONCURRENCY[0]:
                accounts = [bank.open_account("bench", "EUR") for _ in range(ACCOUNTS)]
            run_load(bank, accounts, c, min(1.0, duration_s), seed=0)  # warm-up
            runs = []
            for r in range(repeats):
                runs.append(run_load(bank, accounts, c, duration_s, seed=r + 1))
                progress()
            rows.append(_summary("eventsourcing", c, runs))
            bank.close()
    finally:
        drop_schema(dsn, schema)
    return rows


def run_companion(base, duration_s: float, repeats: int, progress) -> list[dict[str, Any]]:
    """eventray's load on the companion stack (TLS the other way), with the default Kafka client."""
    from benchmarks._companion import companion
    from eventray.platform.composition import Runtime
    from eventray.platform.projections.actor import stop_topic_runners

    with companion(base) as other:
        rt = Runtime.load(other.model_copy(update={"topic": f"bench-write-tls-{uuid.uuid4().hex[:8]}",
                                                   "partitions": PARTITIONS}))
        try:
            rows = asyncio.run(run_eventray(rt, duration_s, repeats, progress))
        finally:
            stop_topic_runners(rt)
    return [{**r, "tls": other.tls} for r in rows]


def tls_cost_section(tls: bool, ours: list[dict[str, Any]], companion_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows with TLS on and off at each concurrency, and on/off ratios of throughput and p50."""
    rows = [{**r, "tls": tls} for r in ours] + companion_rows
    on = {r["concurrency"]: r for r in rows if r["tls"]}
    off = {r["concurrency"]: r for r in rows if not r["tls"]}
    return {
        "rows": sorted(rows, key=lambda r: (r["concurrency"], not r["tls"])),
        "benchmark_stack_tls": tls,
        "throughput_on_over_off": {str(c): round(on[c]["cmds_per_s"] / off[c]["cmds_per_s"], 3)
                                   for c in CONCURRENCY if off[c]["cmds_per_s"]},
        "p50_ms_added_by_tls": {str(c): round(on[c]["p50_ms"] - off[c]["p50_ms"], 2) for c in CONCURRENCY},
    }


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--clients", choices=["both", *KAFKA_CLIENTS], default="both",
                    help="the Kafka client(s) of eventray's shard writers, measured one after the other")
    ap.add_argument("--no-tls-cost", action="store_true",
                    help="skip the TLS-cost rows (the same load on a companion stack with TLS the other way)")
    args = ap.parse_args()
    duration_s = 3.0 if args.quick else 10.0
    repeats = args.repeats or (3 if args.quick else 5)

    from rich.progress import Progress

    from eventray.platform.composition import Runtime
    from eventray.platform.devstack import stack
    from eventray.platform.devstack.state import effective_settings

    import psycopg

    from eventray.platform.migrations import migrate
    from eventray.platform.projections.actor import stop_topic_runners

    stack.up()
    base = effective_settings()
    db = f"bench_write_{uuid.uuid4().hex[:8]}"  # projection names are global in a database: one of its own
    with psycopg.connect(base.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    settings = base.model_copy(update={"topic": f"bench-write-{uuid.uuid4().hex[:8]}", "partitions": PARTITIONS,
                                       "database_url": with_database(base.dsn, db)})
    migrate(settings.dsn)
    clients = list(KAFKA_CLIENTS) if args.clients == "both" else [args.clients]
    total = (len(clients) + 1 + (0 if args.no_tls_cost else 1)) * len(CONCURRENCY) * repeats
    companion_rows: list[dict[str, Any]] = []
    lags: dict[str, dict[str, Any]] = {}
    ours: list[dict[str, Any]] = []
    rt = None
    try:
        with Progress() as bar:
            task = bar.add_task("write throughput", total=total)
            step = lambda: bar.advance(task)  # noqa: E731
            for client in clients:  # side by side: same load, same stack, one client at a time
                rt = Runtime.load(settings.model_copy(update={
                    "kafka_client": client, "topic": f"bench-write-{uuid.uuid4().hex[:8]}"}))
                lags[client] = {}
                ours += asyncio.run(run_eventray(rt, duration_s, repeats, step, lags[client]))
                stop_topic_runners(rt)
            if not args.no_tls_cost:
                companion_rows = run_companion(base, duration_s, repeats, step)
            peer = run_peer(settings.dsn, duration_s, repeats, step)
    finally:
        if rt is not None:
            stop_topic_runners(rt)
        with psycopg.connect(base.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    rows = ours + peer
    default = [r for r in ours if r["kafka_client"] == settings.kafka_client] or ours
    best_ours = max(r["cmds_per_s"] for r in default)
    best_peer = max(r["cmds_per_s"] for r in peer)
    peer_at = {r["concurrency"]: r["cmds_per_s"] for r in peer}
    vs_peer = {client: {str(r["concurrency"]): round(r["cmds_per_s"] / peer_at[r["concurrency"]], 2)
                        for r in ours if r["kafka_client"] == client} for client in clients}
    lag = lags.get(settings.kafka_client) or next(iter(lags.values()))
    tls_cost = tls_cost_section(settings.tls, default, companion_rows) if companion_rows else None
    result = {
        "eventray_cmds_per_s": best_ours,
        "peer_cmds_per_s": best_peer,
        "ratio": best_ours / best_peer,
        "vs_peer_by_concurrency": vs_peer,
        "goal_vs_peer_by_concurrency": {"1": 1.0, "16": 5.0, "256": 30.0},
        "default_kafka_client": settings.kafka_client,
        "p50_ms_c1": next(r["p50_ms"] for r in default if r["concurrency"] == 1),
        "p99_ms_c256": next(r["p99_ms"] for r in default if r["concurrency"] == 256),
        "lag_p99_s_under_write_load": max((v.get("p99_s") or 0.0) for v in lags.values()),
        "projection_lag_under_write_load": {**lag, "projections": PLAIN, "concurrency": CONCURRENCY[-1],
                                            "goal_p99_s": 1.0, "by_kafka_client": lags},
        "rows": rows,
        "tls": settings.tls,
        "tls_cost": tls_cost,
        "quick": args.quick,
        "duration_s": duration_s,
        "repeats": repeats,
        "accounts": ACCOUNTS,
        "partitions": PARTITIONS,
        "shards": settings.shards,
    }
    path = write_results("write_throughput", result)
    print_table("write throughput (median of runs)", rows,
                ["system", "kafka_client", "concurrency", "cmds_per_s", "p50_ms", "p99_ms", "failures"])
    print(f"eventray / peer at each concurrency: {vs_peer}")
    print(f"eventray {best_ours:,.0f} cmds/s vs eventsourcing {best_peer:,.0f} cmds/s "
          f"= {best_ours / best_peer:.1f}x; results in {path}")
    if tls_cost is not None:
        print_table("what TLS costs (the default Kafka client, same run)", tls_cost["rows"],
                    ["tls", "concurrency", "cmds_per_s", "p50_ms", "p99_ms", "failures"])
        print(f"throughput with TLS / without, per concurrency: {tls_cost['throughput_on_over_off']}")
    print(f"projection lag at c={CONCURRENCY[-1]}: p50 {lag.get('p50_s', float('nan')):.2f}s "
          f"p99 {lag.get('p99_s', float('nan')):.2f}s over {lag.get('samples', 0)} samples")


if __name__ == "__main__":
    main()
