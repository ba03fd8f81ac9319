"""Rebuild throughput of account_activity: eventray replay vs the eventsourcing peer vs read+decode.

    python -m benchmarks.replay [--quick] [--repeats N] [--clients both|kafka-python|confluent-kafka]

The work: N events (AccountOpened + MoneyDeposited/MoneyWithdrawn) on 4 partitions of a fresh
topic; ``eventray replay account_activity`` rebuilds from offset 0 (one runner actor per
partition; each batch COPYed and committed with its offsets). The rate is events applied /
time from the runners' start to the committed switch (the runners' actor start-up is
reported apart). The limit: the same partitions read and decoded by one process per
partition, no writes. Then the bank's three plain projections are caught up together from
offset 0 by projection hosts (one read per partition for all three:
``all_projections_events_per_s``), and the alerts projection against the anomaly model's raw
ONNX Runtime rate (``alerts_events_per_s``, ``alerts_scoring_limit_per_s``; see
benchmarks/_alerts_catch_up.py). The peer: the eventsourcing library's ProjectionRunner over the same
shape and number of events in its PostgreSQL store (it commits one transaction per event, so the
full run's peer takes about ten minutes; ``--quick`` uses 100,000 events for both).

eventray's part runs once per Kafka client (kafka-python, confluent-kafka), side by side on the
same events (``by_kafka_client``). ``events_per_s`` is the default client's;
``read_decode_limit_per_s`` is the fastest reader's limit, as the goal asks.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import psycopg
import ray

from benchmarks._common import median, parser, print_table, write_results
from eventray.platform.eventlog.writer import KAFKA_CLIENTS
from eventray.platform.settings import with_database

PARTITIONS = 4


@ray.remote(num_cpus=0)
def _seed_partition(settings: Any, partition: int, accounts: list[str], events: int, seed: int) -> int:
    from eventray.aggregates.account import AccountOpened, MoneyDeposited, MoneyWithdrawn
    from eventray.platform.composition import Runtime

    rt = Runtime.load(settings)
    codec = rt.codec
    writer = rt.build_writer(partition)
    writer.init()
    rng = random.Random(seed)
    balances = dict.fromkeys(accounts, 0)
    versions = dict.fromkeys(accounts, 0)
    batch: list[tuple[bytes, bytes]] = []
    written = 0

    def emit(acc: str, ev: Any) -> None:
        versions[acc] += 1
        batch.append((acc.encode(), codec.encode(ev, aggregate_type="Account", aggregate_id=acc,
                                                 version=versions[acc], command_id=uuid.uuid4().hex,
                                                 correlation_id="bench")))

    for acc in accounts:
        emit(acc, AccountOpened(owner_id="owner-" + acc[-3:], currency="EUR"))
    while written + len(batch) < events:
        acc = rng.choice(accounts)
        amount = rng.randint(1, 500)
        if balances[acc] >= amount and rng.random() < 0.3:
            balances[acc] -= amount
            emit(acc, MoneyWithdrawn(amount=amount, balance_after=balances[acc]))
        else:
            balances[acc] += amount
            emit(acc, MoneyDeposited(amount=amount, balance_after=balances[acc]))
        if len(batch) >= 5000:
            writer.append_batch(batch)
            written += len(batch)
            batch = []
    if batch:
        writer.append_batch(batch)
        written += len(batch)
    writer.close()
    return written


@ray.remote(num_cpus=0)
class _ReadDecode:
    """The limit: read and decode one partition, nothing else."""

    def __init__(self, settings: Any, partition: int) -> None:
        from eventray.platform.composition import Runtime

        rt = Runtime.load(settings)
        self._codec = rt.codec
        self._reader = rt.reader(partition)
        self._end = self._reader.last_stable_offset()

    def run(self) -> tuple[int, float, float]:
        t0 = time.time()
        n = 0
        for batch in self._reader.read_events(self._codec, 0, until=self._end):
            n += len(batch)
        return n, t0, time.time()


def read_decode_limit(rt: Any) -> dict[str, Any]:
    actors = [_ReadDecode.remote(rt.settings, p) for p in range(PARTITIONS)]
    results = ray.get([a.run.remote() for a in actors])
    for a in actors:
        ray.kill(a)
    n = sum(r[0] for r in results)
    elapsed = max(r[2] for r in results) - min(r[1] for r in results)
    return {"events": n, "seconds": elapsed, "events_per_s": n / elapsed}


PLAIN = ["account_balances", "account_activity", "user_directory"]


def all_projections_catch_up(rt: Any, base_dsn: str, written: int) -> dict[str, Any]:
    """The bank's three plain projections caught up together from offset 0 by projection hosts.

    A database of its own (so they are first versions), one host per partition: each reads
    its partition once and applies all three. The time runs from placing the hosts (their
    start-up included) until every projection has stored the log's end on every partition.
    """
    from eventray.platform.migrations import migrate
    from eventray.platform.projections.host import place_hosts, stop_hosts
    from eventray.platform.projections.replay import LogEnds
    from eventray.platform.projections.store import ProjectionStore

    db = f"bench_hosts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = with_database(base_dsn, db)
    hosted = rt.with_settings(database_url=dsn, projection_hosts=0)
    migrate(dsn)
    store = ProjectionStore(dsn)
    ends_reader = LogEnds(rt.settings.kafka_address, rt.topic, PARTITIONS, tls=rt.settings.tls_files())
    try:
        ends = ends_reader()
        for name in PLAIN:
            proj = rt.projection(name)
            info = store.create_version(name, ddl=proj.ddl, topic=rt.topic, partitions=PARTITIONS,
                                        definition_version=type(proj).version)
            assert store.switch(name, info.version)
        t0 = time.perf_counter()
        place_hosts(hosted, names=PLAIN)
        started = time.perf_counter() - t0
        while True:
            behind = sum(max(0, ends[p] - store.progress(n, 1)[0].get(p, 0)) for n in PLAIN for p in ends)
            if behind == 0:
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        stop_hosts(hosted)
    finally:
        ends_reader.close()
        store.close()
        with psycopg.connect(base_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    return {"events": written, "seconds": seconds, "host_startup_s": started, "hosts": PARTITIONS,
            "events_per_s": written / seconds, "projections": PLAIN}


def main() -> None:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("--clients", choices=["both", *KAFKA_CLIENTS], default="both",
                    help="the Kafka client(s) of eventray's readers, measured one after the other")
    args = ap.parse_args()
    events = 100_000 if args.quick else 1_000_000
    peer_events = events  # the same work: the peer replays as many events as eventray
    repeats = args.repeats or (2 if args.quick else 3)

    from eventray.platform.composition import Runtime
    from eventray.platform.devstack import effective_settings
    from eventray.platform.migrations import migrate
    from eventray.platform.projections.actor import stop_topic_runners
    from eventray.platform.projections.replay import replay

    base = effective_settings()
    db = f"bench_replay_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = with_database(base.dsn, db)
    settings = base.model_copy(update={"database_url": dsn, "topic": f"bench-replay-{uuid.uuid4().hex[:8]}",
                                       "partitions": PARTITIONS})
    rt = Runtime.load(settings)
    migrate(dsn)
    rt.connect_ray()
    rt.ensure_topic()
    result: dict[str, Any] = {}
    try:
        from eventray.platform.eventlog.admin import partition_for

        accounts = [f"acct-{i:06d}" for i in range(20_000)]
        per_part: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
        for a in accounts:
            per_part[partition_for(a, PARTITIONS)].append(a)
        t = time.perf_counter()
        written = sum(ray.get([_seed_partition.remote(rt.settings, p, per_part[p], events // PARTITIONS, p)
                               for p in range(PARTITIONS)]))
        print(f"seeded {written:,} events in {time.perf_counter() - t:.1f}s")

        clients = list(KAFKA_CLIENTS) if args.clients == "both" else [args.clients]
        by_client: dict[str, dict[str, Any]] = {}
        for client in clients:  # side by side, same events, same stack, one client after the other
            crt = rt.with_settings(kafka_client=client)
            runs, limits = [], []
            for i in range(repeats):
                limits.append(read_decode_limit(crt))
                print(f"[{client}] read+decode limit run {i + 1}: {limits[-1]['events_per_s']:,.0f} events/s")
                report = replay(crt, "account_activity", timeout_s=1800)
                runs.append({"events": report.events, "seconds": report.catch_up_s, "startup_s": report.startup_s,
                             "events_per_s": report.events_per_s, "version": report.new_version})
                print(f"[{client}] replay run {i + 1}: {report.events:,} events in {report.catch_up_s:.2f}s = "
                      f"{report.events_per_s:,.0f} events/s (+{report.startup_s:.1f}s runner start-up)")
                assert report.events == written, (report.events, written)
            stop_topic_runners(crt)
            together = all_projections_catch_up(crt, base.dsn, written)
            print(f"[{client}] three plain projections on hosts from offset 0: {together['events']:,} events in "
                  f"{together['seconds']:.2f}s = {together['events_per_s']:,.0f} events/s "
                  f"(host start-up {together['host_startup_s']:.1f}s included)")
            by_client[client] = {
                "events_per_s": median([r["events_per_s"] for r in runs]),
                "read_decode_limit_per_s": median([r["events_per_s"] for r in limits]),
                "all_projections_events_per_s": together["events_per_s"],
                "all_projections": together, "runs": runs, "limit_runs": limits,
            }
        default = by_client.get(rt.settings.kafka_client) or next(iter(by_client.values()))
        fastest_reader = max(by_client, key=lambda c: by_client[c]["read_decode_limit_per_s"])
        runs, limits, together = default["runs"], default["limit_runs"], default["all_projections"]

        from benchmarks._alerts_catch_up import alerts_catch_up

        opened = len(accounts)
        alerts = alerts_catch_up(rt, base.dsn, written - opened, seconds=2.0 if args.quick else 5.0)
        print(f"alerts on its host from offset 0: {alerts['alerts_events_per_s']:,.0f} movements/s against "
              f"{alerts['alerts_scoring_limit_per_s']:,.0f} rows/s of raw ONNX Runtime scoring "
              f"({alerts['alerts_fraction_of_limit']:.0%})")

        from benchmarks import _peer_replay

        schema = f"peer_replay_{uuid.uuid4().hex[:6]}"
        _peer_replay.seed(dsn, schema, peer_events, max(1, peer_events // 50))
        peer = _peer_replay.replay(dsn, schema)
        print(f"peer: {peer['events']:,} events in {peer['seconds']:.1f}s = {peer['events_per_s']:,.0f} events/s")

        eps = default["events_per_s"]
        limit = by_client[fastest_reader]["read_decode_limit_per_s"]  # the goal's limit: the fastest reader's
        result = {
            "benchmark": "replay account_activity",
            "quick": bool(args.quick),
            "events": written,
            "partitions": PARTITIONS,
            "repeats": repeats,
            "events_per_s": eps,
            "events_per_s_with_startup": median([r["events"] / (r["seconds"] + r["startup_s"]) for r in runs]),
            "peer_events_per_s": peer["events_per_s"],
            "peer_events": peer["events"],
            "peer_note": "eventsourcing ProjectionRunner commits one transaction per event; "
                         f"it replays {peer['events']:,} events, as many as eventray's rebuild",
            "read_decode_limit_per_s": limit,
            "read_decode_limit_client": fastest_reader,
            "default_kafka_client": rt.settings.kafka_client,
            "best_events_per_s": max(v["events_per_s"] for v in by_client.values()),
            "by_kafka_client": by_client,
            "ratio": eps / peer["events_per_s"],
            "fraction_of_limit": eps / limit,
            "all_projections_events_per_s": together["events_per_s"],
            "all_projections": together,
            **alerts,
            "goals": {"events_per_s": 150_000, "ratio": 50.0, "fraction_of_limit": 0.8,
                      "all_projections_events_per_s": 100_000},
            "runs": runs,
            "limit_runs": limits,
            "peer": peer,
        }
        path = write_results("replay", result)
        table = []
        for client, v in by_client.items():
            table += [{"system": f"eventray replay ({client})", "events/s": v["events_per_s"]},
                      {"system": f"3 projections on hosts ({client})", "events/s": v["all_projections_events_per_s"]},
                      {"system": f"read+decode limit ({client})", "events/s": v["read_decode_limit_per_s"]}]
        table.append({"system": "eventsourcing peer", "events/s": peer["events_per_s"]})
        print_table("replay account_activity", table, ["system", "events/s"])
        print(f"ratio {result['ratio']:.1f}x peer, {result['fraction_of_limit']:.0%} of the limit -> {path}")
    finally:
        stop_topic_runners(rt)
        with psycopg.connect(base.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
