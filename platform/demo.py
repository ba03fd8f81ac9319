"""``eventray demo``: the main job, end to end on the local stack.

Brings the stack up (each piece skipped when it already runs), trains the app's models on
first use and deploys them, deploys everything the app declares (shards, every projection,
the saga coordinators, the GraphQL app with the console), then runs the scripted scenario of
:mod:`eventray.serving.demo` over HTTP: concurrent customers with a shard killed under them
and the count of what was lost, a live subscription, transfers (completed, compensated,
flagged by the fraud model), one query per model family, a projection rebuilt with
``eventray replay`` while it is being queried. It ends with a summary, the GraphiQL and
console URLs, and leaves everything running until ``eventray dev down``.
``--smoke`` only checks Kafka and PostgreSQL.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from rich.console import Console

from eventray.platform import devstack
from eventray.platform.cli import add_app_argument, load_runtime
from eventray.platform.errors import ConfigurationError, ServiceUnavailable
from eventray.platform.settings import DEFAULT_APP, Settings
from eventray.platform.tls import TLSFiles, kafka_options


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("demo", help="dev up, deploy everything the app declares, run the scripted scenario")
    p.add_argument("--smoke", action="store_true", help="only a smoke check of Kafka and PostgreSQL")
    p.add_argument("--clients", type=int, default=16, help="concurrent GraphQL clients")
    p.add_argument("--commands", type=int, default=100, help="commands per client")
    p.add_argument("--projection", default="account_balances", help="the projection to rebuild")
    add_app_argument(p)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    console = Console()
    report = devstack.up(Settings(), console=Console(stderr=True))
    devstack.render(report, console)
    settings = report.settings
    if not getattr(args, "smoke", False):
        return _scenario(args, load_runtime(args, settings), console)
    with console.status("smoke check"):
        kafka_line = kafka_round_trip(settings.kafka_address, tls=settings.tls_files())
        pg_line = postgres_round_trip(settings.dsn)
    console.print(f"[green]kafka[/]     {kafka_line}")
    console.print(f"[green]postgres[/]  {pg_line}")
    return 0


def _scenario(args: argparse.Namespace, rt: Any, console: Console) -> int:
    import asyncio

    from rich.table import Table

    from eventray.platform.deploy.deploy import deploy
    from eventray.platform.projections.cli import status as projection_status
    from eventray.serving import demo
    from eventray.serving.settings import ServingSettings

    if rt.app.import_path != DEFAULT_APP:
        raise ConfigurationError(f"the demo's scenario is the bundled bank's; for {rt.app.import_path} run "
                                 "`eventray serve --app ...` and send it commands through GraphQL")
    serving = ServingSettings()
    t0 = time.perf_counter()
    _models(rt, serving, console)
    with console.status("starting the app: shards, projections, saga coordinators, GraphQL") as st:
        report = deploy(rt, None, serving=serving, strict=True, progress=lambda what: st.update(f"starting: {what}"))
    for change in report.changes:
        console.print(f"  [green]changed[/] {change}", highlight=False)
    url = report.graphql_url
    assert url is not None
    console.print(f"[green]serving[/]   {url}  (everything the app declares is up after "
                  f"{time.perf_counter() - t0:.1f}s)", highlight=False)
    figures = asyncio.run(demo.run_scenario(url, serving, console, kill_shard=lambda: kill_a_shard(rt),
                                            clients=args.clients, commands_per_client=args.commands))
    if figures.sample_account:
        demo.replay_while_querying(url, serving, figures.sample_account, args.projection, console, figures)
    table = Table(title="eventray demo summary (this run)", show_header=False)
    for part in figures.parts:
        table.add_row(f"{'ok' if part.ok else 'FAILED'}  {part.name}", part.summary)
    table.add_row("commands/s (concurrent phase)", f"{figures.commands_per_s:,.0f}")
    table.add_row("latency p50 / p99", f"{figures.percentile(0.5):.1f} ms / {figures.percentile(0.99):.1f} ms")
    table.add_row("failed requests", str(figures.failures + figures.replay_errors))
    for row in projection_status(rt):
        if row.get("current"):
            table.add_row(f"projection lag: {row['name']} v{row['version']}", f"{row.get('lag', '?')} events")
    base = url.rsplit("/", 1)[0]
    table.add_row("GraphiQL", f"{url}  (token: eventray token <user> --role admin)")
    table.add_row("console", f"{base}/console  (log in with a token: eventray token ops --role admin)")
    console.print(table)
    console.print(f"the console: [bold]{base}/console[/]; log in by pasting the token that "
                  "[bold]eventray token ops --role admin[/] prints", highlight=False)
    console.print("the stack and the app stay up; [bold]eventray dev down[/] stops them")
    if not figures.ok:
        failed = [p.name for p in figures.parts if not p.ok]
        console.print(f"[bold red]the demo failed[/]: {', '.join(failed) or 'failed requests'}", highlight=False)
    return 0 if figures.ok else 1


def _models(rt: Any, serving: Any, console: Console) -> None:
    """Train the app's models on first use (the registry keeps them) and deploy them."""
    if not rt.app.models:
        return
    from eventray.platform.ml.cli import deploy_models, train_missing

    names = sorted(rt.app.models)
    t0 = time.perf_counter()
    with console.status("models") as st:
        trained = train_missing(rt.settings, names, progress=st.update)
        st.update(f"deploying the models {', '.join(names)} as the Serve application {rt.settings.ml_app_name!r}")
        done = deploy_models(rt.settings, names, http_host=serving.http_host, http_port=serving.http_port)
    what = f"trained {len(trained)} into {rt.settings.models_dir}, " if trained else "already trained, "
    what += "deployed" if done.changed else "already running"
    console.print(f"[green]models[/]    {', '.join(names)}: {what} ({time.perf_counter() - t0:.1f}s)", highlight=False)


def kill_a_shard(rt: Any, *, timeout_s: float = 240.0) -> tuple[str, float]:
    """``ray.kill`` one shard actor of the app (Ray restarts it); its name and how long it took to
    answer ``ready`` again."""
    import ray

    from eventray.platform.runtime.actors import NAMESPACE
    from eventray.platform.runtime.shards import shard_name

    name = shard_name(rt.topic, 0)
    ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=False)
    t0 = time.monotonic()
    while True:
        try:
            ray.get(ray.get_actor(name, namespace=NAMESPACE).ready.remote(), timeout=10)
            return name, time.monotonic() - t0
        except Exception:  # noqa: BLE001 - restarting: ask again until the deadline
            if time.monotonic() - t0 > timeout_s:
                raise
            time.sleep(0.2)


def kafka_round_trip(bootstrap: str, *, tls: TLSFiles | None = None) -> str:
    """Commit one transaction to a fresh topic, read it back read_committed, drop the topic."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    security = kafka_options(tls, "kafka-python")
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    topic = f"eventray.demo-{uuid.uuid4().hex[:8]}"
    payload = f"hello from eventray demo {uuid.uuid4()}".encode()
    t0 = time.perf_counter()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="eventray-demo", **security)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        producer = KafkaProducer(bootstrap_servers=bootstrap,
                                 transactional_id=f"eventray-demo-{uuid.uuid4().hex[:8]}", **security)
        try:
            producer.init_transactions()
            producer.begin_transaction()
            producer.send(topic, key=b"demo", value=payload)
            producer.commit_transaction()
        finally:
            producer.close(timeout=5)
        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap,
                                 isolation_level="read_committed", auto_offset_reset="earliest",
                                 enable_auto_commit=False, consumer_timeout_ms=15_000, **security)
        try:
            got = next((m.value for m in consumer if m.value == payload), None)
        finally:
            consumer.close()
        admin.delete_topics([topic])
    except KafkaError as e:
        raise ServiceUnavailable(f"Kafka smoke check against {bootstrap} failed: {e!r}") from e
    finally:
        admin.close()
    if got is None:
        raise ServiceUnavailable(f"the committed record did not come back from {topic}")
    return (f"committed 1 transaction to {topic} and read it back read_committed "
            f"in {time.perf_counter() - t0:.2f}s")


def postgres_round_trip(dsn: str) -> str:
    """Write and read back one row in a temporary table."""
    import psycopg

    token = str(uuid.uuid4())
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("CREATE TEMP TABLE eventray_demo (id int PRIMARY KEY, token text)")
            conn.execute("INSERT INTO eventray_demo VALUES (1, %s)", (token,))
            row = conn.execute("SELECT token FROM eventray_demo WHERE id = 1").fetchone()
            version = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as e:
        raise ServiceUnavailable(f"PostgreSQL smoke check against {dsn} failed: {e}") from e
    if row is None or row[0] != token:
        raise ServiceUnavailable("the row written to PostgreSQL did not come back")
    return f"round-tripped a row through PostgreSQL {version[0] if version else '?'} at {dsn}"
