"""Node loss on a simulated 3-node cluster (``ray.cluster_utils.Cluster``, its own GCS and temp
dir, apart from the dev head): the node holding a shard dies under command load; nothing
acknowledged is lost, nothing applies twice, shards and runners come back on the other nodes
and the projection catches up."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
import ray
from _load import Load, assert_log_exact
from ray._private.state import actors as gcs_actors
from ray.cluster_utils import Cluster

from eventray.platform.composition import Runtime
from eventray.platform.deploy.status import cluster_status
from eventray.platform.migrations import migrate
from eventray.platform.projections.actor import start_runners, stop_topic_runners
from eventray.platform.projections.replay import replay
from eventray.platform.projections.store import ProjectionStore
from eventray.platform.runtime.shards import start_shards
from eventray.platform.settings import with_database

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

TEMP_DIR = "/tmp/er-nodeloss"  # short (unix socket paths), and not the dev head's


@pytest.fixture()
def cluster(monkeypatch):
    # the head would write its address to /tmp/ray/ray_current_cluster: ray.init("auto")
    # elsewhere on this machine must keep finding the dev head
    monkeypatch.setattr(ray._private.utils, "write_ray_address", lambda *a, **k: None)
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "temp_dir": TEMP_DIR, "include_dashboard": False})
    workers = [c.add_node(num_cpus=1, resources={"eventray": 1000}) for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers
    ray.shutdown()
    c.shutdown()


@pytest.fixture()
def rt(stack_settings, cluster):
    c, _ = cluster
    db = f"it_nodeloss_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(stack_settings.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = with_database(stack_settings.dsn, db)
    migrate(dsn)
    s = stack_settings.model_copy(update={
        "database_url": dsn, "ray_address": c.address, "topic": f"it-nodeloss-{uuid.uuid4().hex[:8]}",
        "partitions": 4, "shards": 2, "actor_resource": "eventray", "snapshot_interval_s": 0.5,
    })
    rt = Runtime.load(s)
    rt.connect_ray()
    yield rt
    with psycopg.connect(stack_settings.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def where(prefix: str) -> dict[str, str]:
    """Alive actor name -> node id, for names starting with ``prefix``."""
    return {a["Name"]: a["Address"]["NodeID"] for a in gcs_actors().values()
            if a.get("State") == "ALIVE" and (a.get("Name") or "").startswith(prefix)}


def balances(rt) -> dict[str, int]:
    store = ProjectionStore(rt.settings.dsn)
    try:
        info = store.version_info("account_balances", store.current_version("account_balances"))
        rows = store.conn.execute(f"SELECT account_id, balance FROM {info.schema}.accounts").fetchall()
    finally:
        store.close()
    return dict(rows)


async def test_losing_the_shard_node_loses_nothing(rt, cluster) -> None:
    c, workers = cluster
    start_shards(rt)
    await asyncio.to_thread(replay, rt, "account_balances")
    stop_topic_runners(rt)  # replay placed them anywhere; place them on the workers
    version = ProjectionStore(rt.settings.dsn).current_version("account_balances")
    start_runners(rt, "account_balances", version)  # placed by rt.actor_options()
    shards, runners = where(f"shard:{rt.topic}:"), where(f"projection:{rt.topic}:")
    head_id = c.head_node.node_id
    assert head_id not in set(shards.values()) | set(runners.values()), "eventray actors must avoid the head"

    load = Load(rt.command_bus(), clients=12)
    clients = load.start()
    await asyncio.sleep(2.0)
    doomed = next(w for w in workers if w.node_id == shards[f"shard:{rt.topic}:0"])
    moved = [n for n, node in {**shards, **runners}.items() if node == doomed.node_id]
    lost_at = time.monotonic()
    c.remove_node(doomed, allow_graceful=False)
    # serving again: every client has an acknowledged command after the loss
    while not all(any(t > lost_at and ok for t, ok in load.timeline[-200:]) for _ in [0]) or \
            time.monotonic() - lost_at < 1:
        await asyncio.sleep(0.05)
    await asyncio.sleep(3.0)
    load.stop.set()
    await asyncio.gather(*clients)
    failover_s = load.longest_gap_s(lost_at)
    print(f"failover: {failover_s:.2f}s without any acknowledged command; retries {load.retries}; "
          f"{sum(load.deposited.values())} deposits")

    survivors = {w.node_id for w in workers if w is not doomed}
    # the shards serve again above; a runner may still be restarting (its process starting on a
    # loaded machine), so give the moved actors a bounded while to be alive again
    deadline = time.monotonic() + 60
    while True:
        now = {**where(f"shard:{rt.topic}:"), **where(f"projection:{rt.topic}:")}
        if all(now.get(name) in survivors for name in moved) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    for name in moved:
        assert now.get(name) in survivors, f"{name} did not come back on a surviving worker"
    folded = assert_log_exact(rt, load)

    deadline = time.monotonic() + 60
    while True:
        st = cluster_status(rt)
        if all(lag == 0 for lag in st["projections"].values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert st["projections"] and all(lag == 0 for lag in st["projections"].values()), st["projections"]
    assert balances(rt) == {a: s.balance for a, s in folded.items()}
    assert failover_s < 60
