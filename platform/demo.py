"""``eventray demo``: the main job, end to end on the local stack.

Brings the stack up (each piece skipped when it already runs), starts the shards, makes sure
the read models exist, deploys the GraphQL app on Ray Serve, then runs the scripted scenario
of :mod:`eventray.serving.demo` over HTTP: users and accounts, concurrent deposits and
withdrawals, one rule violation, one duplicate ``commandId``, a projection rebuilt with
``eventray replay`` while it is being queried. It ends with a summary (commands/s, p50/p99,
projection lag) and the GraphiQL URL, and leaves everything running until ``eventray dev down``.
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


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("demo", help="dev up, deploy the GraphQL app, run the scripted scenario")
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
        kafka_line = kafka_round_trip(settings.kafka_address)
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
    with console.status("starting the app: shards, read models, saga coordinators, GraphQL") as st:
        report = deploy(rt, None, serving=serving, strict=False, progress=lambda what: st.update(f"starting: {what}"))
    for change in report.changes:
        console.print(f"  [green]changed[/] {change}")
    url = report.graphql_url
    assert url is not None
    console.print(f"[green]serving[/]   {url}")
    figures = asyncio.run(demo.run_scenario(url, serving, console, clients=args.clients,
                                            commands_per_client=args.commands))
    demo.replay_while_querying(url, serving, figures.sample_account, args.projection, console, figures)
    table = Table(title="eventray demo summary", show_header=False)
    table.add_row("commands/s (concurrent phase)", f"{figures.commands_per_s:,.0f}")
    table.add_row("latency p50 / p99", f"{figures.percentile(0.5):.1f} ms / {figures.percentile(0.99):.1f} ms")
    table.add_row("failed requests", str(figures.failures))
    table.add_row(f"replay {args.projection}", f"{figures.replay_seconds:.1f}s, {figures.replay_queries} queries, "
                                              f"{figures.replay_errors} failed")
    for row in projection_status(rt):
        if row.get("current"):
            table.add_row(f"projection lag: {row['name']} v{row['version']}", f"{row.get('lag', '?')} events")
    table.add_row("GraphiQL", f"{url}  (token: eventray token <user> --role admin)")
    console.print(table)
    console.print("the stack and the app stay up; [bold]eventray dev down[/] stops them")
    return 0 if figures.failures == 0 and figures.replay_errors == 0 else 1


def kafka_round_trip(bootstrap: str) -> str:
    """Commit one transaction to a fresh topic, read it back read_committed, drop the topic."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError

    topic = f"eventray.demo-{uuid.uuid4().hex[:8]}"
    payload = f"hello from eventray demo {uuid.uuid4()}".encode()
    t0 = time.perf_counter()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="eventray-demo")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        producer = KafkaProducer(bootstrap_servers=bootstrap,
                                 transactional_id=f"eventray-demo-{uuid.uuid4().hex[:8]}")
        try:
            producer.init_transactions()
            producer.begin_transaction()
            producer.send(topic, key=b"demo", value=payload)
            producer.commit_transaction()
        finally:
            producer.close(timeout=5)
        consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap,
                                 isolation_level="read_committed", auto_offset_reset="earliest",
                                 enable_auto_commit=False, consumer_timeout_ms=15_000)
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
