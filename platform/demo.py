"""``eventray demo``: bring the stack up and prove each piece works end to end.

For now a smoke check: a transaction committed to a temporary topic and read back with
``read_committed``, and a row round-tripped through PostgreSQL.
"""

from __future__ import annotations

import argparse
import time
import uuid

from rich.console import Console

from eventray.platform import devstack
from eventray.platform.errors import ServiceUnavailable
from eventray.platform.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    subparsers.add_parser("demo", help="dev up, then a smoke check of Kafka and PostgreSQL") \
        .set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    console = Console()
    report = devstack.up(Settings(), console=Console(stderr=True))
    devstack.render(report, console)
    settings = report.settings
    with console.status("smoke check"):
        kafka_line = kafka_round_trip(settings.kafka_address)
        pg_line = postgres_round_trip(settings.dsn)
    console.print(f"[green]kafka[/]     {kafka_line}")
    console.print(f"[green]postgres[/]  {pg_line}")
    return 0


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
