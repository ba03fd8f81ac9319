"""The alerts projection end to end: seeded movements in Kafka, the projection runner actors,
the anomaly model on Ray Serve, the ``alerts`` read model in PostgreSQL.

The movements are written as committed events whose envelope timestamps are the simulated
times (the features depend on time of day and gaps), to a topic and a database of the
test's own. One runner crashes inside a batch's transaction (after its writes, before
COMMIT) and is restarted by Ray: the read model must still equal what one in-memory scorer
gives over the whole log, which is what exactly-once means for an enriched projection.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import numpy as np
import psycopg
import pytest
import ray

from eventray.aggregates.account import AccountOpened, MoneyDeposited, MoneyWithdrawn
from eventray.platform.composition import Runtime
from eventray.platform.migrations import migrate
from eventray.platform.ml.datasets import simulate_movements
from eventray.platform.ml.features import Movement
from eventray.platform.ml.training import anomaly_eval, train_all
from eventray.platform.projections.actor import stop_topic_runners
from eventray.platform.projections.replay import replay
from eventray.platform.projections.runner import FaultPoint
from eventray.platform.projections.store import ProjectionStore
from eventray.platform.settings import with_database
from eventray.projections import queries

pytestmark = pytest.mark.integration

APP = f"eventray-alerts-test-{os.getpid()}"
SEED = 4242


@pytest.fixture()
def rt(stack_settings, tmp_path_factory):
    from ray import serve

    from eventray.serving.models import deploy

    db = f"it_alerts_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(stack_settings.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    model_dir = tmp_path_factory.mktemp("alerts-models")
    train_all(model_dir, names=("anomaly",))
    s = stack_settings.model_copy(update={
        "database_url": with_database(stack_settings.dsn, db),
        "topic": f"it-alerts-{uuid.uuid4().hex[:8]}", "partitions": 2, "shards": 1,
        "model_dir": model_dir, "ml_app_name": APP, "ml_min_replicas": 1, "ml_max_replicas": 1,
    })
    migrate(s.dsn)
    rt = Runtime.load(s)
    rt.connect_ray()
    deploy(rt.settings, ("anomaly",))
    yield rt
    stop_topic_runners(rt)
    serve.delete(APP)
    with psycopg.connect(stack_settings.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def write_movements(rt, labeled) -> None:
    """Commit an ``AccountOpened`` per account and one event per movement, at its simulated time."""
    from kafka import KafkaProducer

    codec = rt.codec
    rt.ensure_topic()
    from eventray.platform.tls import kafka_options

    producer = KafkaProducer(bootstrap_servers=rt.settings.kafka_address, acks="all",
                             transactional_id=f"alerts-seed-{uuid.uuid4().hex[:8]}",
                             **kafka_options(rt.settings.tls_files(), "kafka-python"))
    producer.init_transactions()
    producer.begin_transaction()
    versions: dict[str, int] = {}
    for lm in labeled:
        m = lm.movement
        if m.account_id not in versions:
            versions[m.account_id] = 1
            producer.send(rt.topic, key=m.account_id.encode(), value=codec.encode(
                AccountOpened(owner_id="owner", currency="EUR"), aggregate_type="Account",
                aggregate_id=m.account_id, version=1, timestamp=int(m.at * 1000) - 1))
        versions[m.account_id] += 1
        event = (MoneyDeposited if m.kind == "deposit" else MoneyWithdrawn)(amount=m.amount, balance_after=0)
        producer.send(rt.topic, key=m.account_id.encode(), value=codec.encode(
            event, aggregate_type="Account", aggregate_id=m.account_id, version=versions[m.account_id],
            timestamp=int(round(m.at * 1000))))
    producer.commit_transaction()
    producer.close()


def wait_caught_up(rt, timeout_s: float = 120.0) -> None:
    from eventray.platform.projections.cli import status

    deadline = time.monotonic() + timeout_s
    while True:
        row = next(r for r in status(rt) if r["name"] == "alerts" and r["current"])
        if row["lag"] == 0:
            return
        assert time.monotonic() < deadline, f"alerts still lags: {row}"
        time.sleep(0.2)


def read_alerts(rt) -> list[tuple]:
    store = ProjectionStore(rt.settings.dsn)
    try:
        schema = store.version_info("alerts", store.current_version("alerts")).schema
        return store.conn.execute(
            f'SELECT account_id, extract(epoch FROM at)::float8, amount, reason, model_version, score '
            f'FROM "{schema}".alerts').fetchall()
    finally:
        store.close()


def test_alerts_projection_flags_the_seeded_anomalies_exactly_once(rt, tmp_path):
    from eventray.serving.models import AlertScorer, MLClient

    # time order across accounts, as a live log would hold them
    labeled = sorted(simulate_movements(seed=SEED, accounts=60, days=14), key=lambda lm: lm.movement.at)
    half = len(labeled) // 2
    write_movements(rt, labeled[:half])
    # the first batch of partition 0 after the build dies after its writes and offset, before
    # COMMIT, with the feature state of the first half stored; Ray restarts the runner
    marker = tmp_path / "crashed"
    report = replay(rt, "alerts", timeout_s=240,
                    fault={0: FaultPoint(stage="before_commit", marker=str(marker), batch=2)})
    write_movements(rt, labeled[half:])
    wait_caught_up(rt)
    assert marker.exists(), "the fault point never fired: the test did not cover a crash"
    rows = read_alerts(rt)

    flagged = {(a, round(at, 3)) for a, at, *_ in rows}
    truth = np.array([lm.anomalous for lm in labeled])
    flags = np.array([(lm.movement.account_id, round(lm.movement.at, 3)) in flagged for lm in labeled])
    quality = anomaly_eval(flags, truth)
    print(f"alerts projection: precision {quality['precision']:.3f} recall {quality['recall']:.3f} on "
          f"{int(truth.sum())} seeded anomalies in {len(labeled)} movements ({report.events} records, "
          f"{report.events_per_s:.0f} records/s)")
    assert truth.sum() >= 20
    assert quality["precision"] >= 0.8 and quality["recall"] >= 0.8
    assert len(rows) == len(flagged), "a movement was alerted twice"
    assert {r[4] for r in rows} == {"1"}

    # exactly once: the read model equals one in-memory pass over the whole log (no gap, no double fold)
    if not ray.is_initialized():
        rt.connect_ray()

    async def in_memory():
        # the times as the log holds them: epoch milliseconds
        return await AlertScorer(client=MLClient.connect(rt.settings, models=("anomaly",))).score(
            [Movement(m.account_id, round(m.at * 1000) / 1000.0, m.amount, m.kind)
             for m in (lm.movement for lm in labeled)])

    expected = {(a.account_id, round(a.at, 3), a.amount, a.reason) for a in asyncio.run(in_memory()) if a.flagged}
    assert len(expected) == len(rows)
    assert {(a, round(at, 3), amount, reason) for a, at, amount, reason, *_ in rows} == expected

    # and the read API
    account = rows[0][0]

    async def read_api():
        from psycopg_pool import AsyncConnectionPool

        async with AsyncConnectionPool(rt.settings.dsn, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
            return await queries.alerts(pool, account, first=50)

    found = asyncio.run(read_api())
    assert found and all(r.account_id == account and r.reason for r in found)
    assert [r.at for r in found] == sorted((r.at for r in found), reverse=True)
