"""The alerts projection's catch-up against its ceiling, the anomaly model (used by benchmarks.replay).

Trains the anomaly model into a temporary folder and deploys it as a Serve application of
the benchmark's own (one replica). Then, on the topic the replay benchmark seeded:

* **the limit**: the anomaly model run by ONNX Runtime in this process on batches of the
  alerts scorer's chunk size (256 rows; :class:`~eventray.serving.models.alerts.AlertScorer`),
  rows scored per second, nothing else;
* **alerts**: a first version of the projection, from offset 0, on its own projection host
  (a database of its own), until it has stored the log's end on every partition: money
  movements scored (and folded) per second.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from eventray.platform.settings import with_database

APP = "eventray-ml-bench-alerts"
CHUNK = 256


def scoring_limit(model_dir: Path, heldout: np.ndarray, seconds: float) -> float:
    """Rows/s of the anomaly model through ONNX Runtime (one thread, as a replica), 256-row batches
    of the training run's held-out movement features."""
    from eventray.platform.ml.families import load_family
    from eventray.platform.ml.registry import Registry

    registry = Registry(model_dir)
    record = registry.record("anomaly")
    family = load_family(record.family, registry.path(record), threads=1)
    rows_all = np.resize(heldout, (16 * CHUNK, heldout.shape[1])).astype(np.float32)
    batches = [family.validate(rows_all[i:i + CHUNK]) for i in range(0, len(rows_all), CHUNK)]
    family.run([batches[0]])  # warm
    rows, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        family.run([batches[i % len(batches)]])
        rows += CHUNK
        i += 1
    return rows / (time.perf_counter() - start)


def alerts_catch_up(rt: Any, base_dsn: str, movements: int, *, seconds: float) -> dict[str, Any]:
    """``{"alerts_events_per_s", "alerts_scoring_limit_per_s", ...}`` on ``rt``'s seeded topic."""
    from ray import serve

    from eventray.platform.migrations import migrate
    from eventray.platform.ml.training import train, write_models
    from eventray.platform.projections.host import place_hosts, stop_hosts
    from eventray.platform.projections.replay import LogEnds
    from eventray.platform.projections.store import ProjectionStore
    from eventray.serving.models import deploy

    model_dir = Path(tempfile.mkdtemp(prefix="eventray-bench-alerts-"))
    trained = train("anomaly")
    write_models(model_dir, [trained], version="1", seed=0)
    limit = scoring_limit(model_dir, trained.heldout, seconds)
    db = f"bench_alerts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = with_database(base_dsn, db)
    hosted = rt.with_settings(database_url=dsn, model_dir=model_dir, ml_app_name=APP, ml_min_replicas=1,
                              ml_max_replicas=1, projection_hosts=1)
    migrate(dsn)
    store = ProjectionStore(dsn)
    ends_reader = LogEnds(rt.settings.kafka_address, rt.topic, rt.settings.partitions, tls=rt.settings.tls_files())
    try:
        deploy(hosted.settings, ("anomaly",), timeout_s=300)
        ends = ends_reader()
        proj = rt.projection("alerts")
        info = store.create_version("alerts", ddl=proj.ddl, topic=rt.topic, partitions=rt.settings.partitions,
                                    definition_version=type(proj).version)
        assert store.switch("alerts", info.version)
        t0 = time.perf_counter()
        place_hosts(hosted, names=["alerts"])
        started = time.perf_counter() - t0
        while sum(max(0, ends[p] - store.progress("alerts", info.version)[0].get(p, 0)) for p in ends):
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        stop_hosts(hosted)
    finally:
        ends_reader.close()
        store.close()
        try:
            serve.delete(APP)
        except Exception:  # noqa: BLE001 - not deployed: nothing to delete
            pass
        with psycopg.connect(base_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    return {"alerts_events_per_s": movements / elapsed, "alerts_scoring_limit_per_s": limit,
            "alerts_fraction_of_limit": movements / elapsed / limit, "alerts_movements": movements,
            "alerts_seconds": elapsed, "alerts_host_startup_s": started, "alerts_chunk": CHUNK,
            "goal_fraction_of_limit": 0.8}
