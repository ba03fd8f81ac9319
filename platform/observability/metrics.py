"""The platform's metrics, exported through Ray's metrics agent.

Every actor and Serve replica records into :mod:`ray.util.metrics`; the metrics agent of each
Ray node serves all of them, prefixed ``ray_``, at ``http://<node>:<metrics export port>/metrics``
(``EVENTRAY_RAY_METRICS_EXPORT_PORT``, 26380 on the dev head). That is the one place to
scrape; on a cluster Prometheus finds every node through the file Ray writes at
``<temp dir>/prom_metrics_service_discovery.json``. Ray's own Serve metrics
(``ray_serve_*``: replicas per deployment, per-deployment latency, model deployments included)
come from the same endpoint. ``eventray metrics`` prints the URL and the current values.

Recorders here are small objects built in the actor shells and injected into the services
(``ShardService(observer=...)``); the services never import Ray. Metric objects are created
once per process (Ray registers a metric per name and process).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("eventray.metrics")

#: seconds; command and GraphQL latencies
LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
#: commands per shard batch
BATCH_BUCKETS: list[float] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000]
#: seconds between re-sets of a state gauge. Ray's metrics agent drops a gauge series that was
#: not set for two report intervals (``metrics_report_interval_ms``, 10 s by default), so a gauge
#: describing state (aggregates held by an idle shard) must be set again, not only on change.
GAUGE_REFRESH_S = 5.0


@functools.cache
def _registry() -> dict[str, Any]:
    from ray.util.metrics import Counter, Gauge, Histogram

    def counter(name: str, doc: str, *tags: str) -> Any:
        return Counter(name, description=doc, tag_keys=tags)

    def gauge(name: str, doc: str, *tags: str) -> Any:
        return Gauge(name, description=doc, tag_keys=tags)

    def hist(name: str, doc: str, buckets: list[float], *tags: str) -> Any:
        return Histogram(name, description=doc, boundaries=buckets, tag_keys=tags)

    return {
        # --- write path (per partition) ---
        "commands": counter("eventray_shard_commands", "Commands a shard decided.", "topic", "partition"),
        "command_latency": hist("eventray_shard_command_latency_s",
                                "Seconds from a shard receiving commands to their committed outcome.",
                                LATENCY_BUCKETS, "topic", "partition"),
        "batch_size": hist("eventray_shard_batch_size", "Commands per shard batch (one Kafka transaction).",
                           BATCH_BUCKETS, "topic", "partition"),
        "command_errors": counter("eventray_shard_command_errors",
                                  "Commands answered with an error, by error type and kind (retryable|domain).",
                                  "topic", "partition", "error_type", "kind"),
        "commit_latency": hist("eventray_kafka_commit_latency_s",
                               "Seconds per Kafka transaction of a batch (begin, send, commit).",
                               LATENCY_BUCKETS, "topic", "partition"),
        "commit_failures": counter("eventray_kafka_commit_failures", "Kafka transactions that failed.",
                                   "topic", "partition"),
        "fenced": counter("eventray_shard_fenced", "Shard incarnations fenced by a newer one.", "topic", "partition"),
        "aggregates": gauge("eventray_shard_aggregates", "Aggregates held in a shard's memory.", "topic", "partition"),
        "recovery": gauge("eventray_shard_recovery_s", "Seconds the last recovery of a partition took.",
                          "topic", "partition"),
        "snapshot_lag": gauge("eventray_shard_snapshot_lag", "Log offsets past the last complete snapshot.",
                              "topic", "partition"),
        # --- read path ---
        "projection_events": counter("eventray_projection_events", "Events a projection runner applied.",
                                     "projection", "partition"),
        "projection_lag": gauge("eventray_projection_lag", "Offsets between the log's end and a runner.",
                                "projection", "partition"),
        "projection_dead": counter("eventray_projection_dead_letters", "Records a runner dead-lettered.",
                                   "projection", "partition"),
        # --- sagas ---
        "saga_in_flight": gauge("eventray_saga_in_flight", "Saga instances not yet terminal.", "saga", "partition"),
        "saga_instances": gauge("eventray_saga_instances",
                                "Saga instances by status (completed, compensated, failed, ...).",
                                "saga", "partition", "status"),
        # --- GraphQL ---
        "graphql_requests": counter("eventray_graphql_requests", "GraphQL requests by operation.",
                                    "operation", "type"),
        "graphql_errors": counter("eventray_graphql_errors", "GraphQL responses with errors, by operation and code.",
                                  "operation", "code"),
        "graphql_latency": hist("eventray_graphql_latency_s", "GraphQL request latency by operation.",
                                LATENCY_BUCKETS, "operation"),
    }


def metric(key: str) -> Any:
    """The process's metric object called ``key`` (see ``_registry``)."""
    return _registry()[key]


def _zero(key: str, tags: dict[str, str]) -> None:
    """Export a counter at 0 before its first event (Prometheus practice: a rare event's series
    exists, so ``increase()`` and alerts see 0, not "no data"). Ray's ``inc`` refuses 0."""
    try:
        metric(key)._record(0, tags=tags)
    except Exception as e:  # noqa: BLE001 - private API of ray.util.metrics; the series appears on first use
        log.debug("could not export %s at 0: %s", key, e)


class ShardMetrics:
    """The :class:`~eventray.platform.runtime.shard.ShardService` observer that records metrics.

    Also logs, per batch, the correlation ids the batch carried (``EVENTRAY_TRACE_COMMANDS``),
    which is what ``eventray logs --correlation`` finds in a shard's log.
    """

    def __init__(self, topic: str, *, trace: bool = True) -> None:
        self._topic = topic
        self._trace = trace
        self._checkpoint: dict[int, int] = {}
        self._recovery: dict[int, float] = {}
        self._next: dict[int, int] = {}
        #: partition -> {gauge key: last value}, set again by :meth:`export` (see GAUGE_REFRESH_S)
        self._gauges: dict[int, dict[str, float]] = {}
        self._log = logging.getLogger("eventray.shard")

    def _tags(self, partition: int) -> dict[str, str]:
        return {"topic": self._topic, "partition": str(partition)}

    def _set(self, partition: int, **values: float) -> None:
        tags = self._tags(partition)
        for key, value in values.items():
            metric(key).set(value, tags=tags)
        self._gauges.setdefault(partition, {}).update(values)

    def export(self) -> None:
        """Set every gauge again (see GAUGE_REFRESH_S); the actor's :class:`Exporter` calls it."""
        for partition, values in list(self._gauges.items()):
            tags = self._tags(partition)
            for key, value in list(values.items()):
                metric(key).set(value, tags=tags)

    def recovered(self, partition: int, seconds: float, aggregates: int, checkpoint: int) -> None:
        tags = self._tags(partition)
        self._set(partition, recovery=seconds, aggregates=aggregates)
        self._checkpoint[partition] = checkpoint
        self._recovery[partition] = seconds
        _zero("fenced", tags)
        _zero("commit_failures", tags)

    def committed(self, partition: int, commands: int, seconds: float) -> None:
        tags = self._tags(partition)
        metric("batch_size").observe(commands, tags=tags)
        metric("commit_latency").observe(seconds, tags=tags)

    def commit_failed(self, partition: int) -> None:
        metric("commit_failures").inc(1, tags=self._tags(partition))

    def fenced(self, partition: int) -> None:
        metric("fenced").inc(1, tags=self._tags(partition))

    def snapshot_saved(self, partition: int, checkpoint: int) -> None:
        self._checkpoint[partition] = checkpoint
        if (next_offset := self._next.get(partition)) is not None:
            self._set(partition, snapshot_lag=max(0, next_offset - checkpoint))

    def answered(self, partition: int, commands: Sequence[Any], outcomes: Sequence[Any],
                 waited_s: Sequence[float], *, aggregates: int, next_offset: int) -> None:
        """One batch answered: its commands, outcomes and each caller's wait."""
        from eventray.platform.errors import Retryable
        from eventray.platform.runtime.outcome import error_class

        tags = self._tags(partition)
        metric("commands").inc(len(commands), tags=tags)
        for seconds in waited_s:
            metric("command_latency").observe(seconds, tags=tags)
        errors = Tally((o.error_type or "Error", o.error_code) for o in outcomes if o.error_code is not None)
        for (error_type, code), n in errors.items():
            kind = "retryable" if issubclass(error_class(code), Retryable) else "domain"
            metric("command_errors").inc(n, tags={**tags, "error_type": error_type, "kind": kind})
        self._next[partition] = next_offset
        self._set(partition, aggregates=aggregates, recovery=self._recovery.get(partition, 0.0),
                  snapshot_lag=max(0, next_offset - self._checkpoint.get(partition, 0)))
        if self._trace:
            ids = sorted({c.correlation_id for c in commands if c.correlation_id})
            if ids:
                self._log.info("batch of %d commands answered on partition %d", len(commands), partition,
                               extra={"correlation_ids": ids, "partition": partition})


class ProjectionBatchLog:
    """A runner's per-batch hook: logs the correlation ids of the events a batch applied."""

    def __init__(self, name: str, partition: int, *, trace: bool = True) -> None:
        self._name, self._partition, self._trace = name, partition, trace
        self._log = logging.getLogger("eventray.projection")

    def __call__(self, decoded: Sequence[Any]) -> None:
        if not self._trace:
            return
        ids = sorted({env.correlation_id for item in decoded
                      if (env := getattr(item, "envelope", None)) is not None and env.correlation_id})
        if ids:
            self._log.info("%s[%d]: applied a batch of %d records", self._name, self._partition, len(decoded),
                           extra={"correlation_ids": ids, "projection": self._name, "partition": self._partition})


class Exporter:
    """One daemon thread per actor process that calls every registered export every ``interval_s``.

    Shards set their state gauges again (Ray drops a gauge not set for two report intervals),
    projection runners report events, dead letters and lag, coordinators their instance
    counts: all through this one thread, however many partitions the actor owns.
    """

    def __init__(self, interval_s: float = GAUGE_REFRESH_S) -> None:
        self._interval = interval_s
        self._exports: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, export: Callable[[], None]) -> None:
        self._exports.append(export)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="eventray-metrics")
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            for export in list(self._exports):
                try:
                    export()
                except Exception as e:  # noqa: BLE001 - metrics must never stop the actor
                    log.warning("metrics export %s failed: %s", getattr(export, "__qualname__", export), e)

    def close(self) -> None:
        self._stop.set()


class ProjectionMetrics:
    """A runner's counters and lag gauge for one partition, from its ``describe()``."""

    def __init__(self, name: str, partition: int, describe: Callable[[], dict[str, Any]],
                 last_stable_offset: Callable[[], int]) -> None:
        self._tags = {"projection": name, "partition": str(partition)}
        self._describe, self._end = describe, last_stable_offset
        self._seen = {"applied": 0, "dead_letters": 0}
        _zero("projection_dead", self._tags)

    def export(self) -> None:
        d = self._describe()
        for field, key in (("applied", "projection_events"), ("dead_letters", "projection_dead")):
            now = int(d.get(field) or 0)
            if now > self._seen[field]:
                metric(key).inc(now - self._seen[field], tags=self._tags)
            self._seen[field] = now
        offset = d.get("next_offset")
        if offset is not None:
            metric("projection_lag").set(max(0, self._end() - int(offset)), tags=self._tags)


def saga_export(saga: str, partition: int, describe: Callable[[], dict[str, Any]]) -> Callable[[], None]:
    """In-flight and per-status instance counts of one saga partition, for the :class:`Exporter`."""
    tags = {"saga": saga, "partition": str(partition)}

    def export() -> None:
        d = describe()
        metric("saga_in_flight").set(int(d.get("live") or 0), tags=tags)
        by_status = {"completed": 0, "compensated": 0, "failed": 0, **(d.get("by_status") or {})}
        for status, n in by_status.items():
            metric("saga_instances").set(int(n), tags={**tags, "status": str(status)})

    return export


def observe_graphql(operation: str, op_type: str, seconds: float, error_codes: Sequence[str]) -> None:
    """One GraphQL request (called by the ingress middleware)."""
    metric("graphql_requests").inc(1, tags={"operation": operation, "type": op_type})
    metric("graphql_latency").observe(seconds, tags={"operation": operation})
    for code in error_codes:
        metric("graphql_errors").inc(1, tags={"operation": operation, "code": code})


def scrape_url(settings: Any) -> str:
    """The Prometheus URL of the stack's head node (the one place to scrape)."""
    import ray

    from eventray.platform.composition import connect_ray

    connect_ray(settings)
    for node in ray.nodes():
        if node.get("Alive") and node.get("MetricsExportPort"):
            if node.get("Resources", {}).get("node:__internal_head__"):
                return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    raise RuntimeError("no live Ray head node reports a metrics export port")


def wait_for(fetch: Callable[[], str], names: Sequence[str], timeout_s: float = 60.0) -> str:
    """Poll ``fetch`` until every metric in ``names`` appears in the text; returns the text."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = fetch()
        if all(n in text for n in names):
            return text
        time.sleep(2.0)
    return text
