"""The Ray shell around :class:`PartitionRunner`, and how runners are built, found and stopped.

One named, detached, restartable actor per (topic, projection, version, partition). Its
work runs on a thread of its own, so ``describe`` and ``stop`` answer while it applies
batches. After a crash Ray restarts it with the same arguments; the runner resumes from the
offsets stored with the read model.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import ray

from eventray.platform.errors import ConfigurationError, EventrayError
from eventray.platform.projections.definition import Projection
from eventray.platform.projections.runner import FaultPoint, PartitionRunner
from eventray.platform.settings import Settings

__all__ = ["NAMESPACE", "ProjectionRunnerActor", "build_runner", "projection", "runner_name",
           "start_runners", "stop_runners", "stop_topic_runners"]

log = logging.getLogger("eventray.projection")

NAMESPACE = "eventray"


def projection(name: str, settings: Settings | None = None) -> Projection:
    """The registered projection called ``name`` (see ``eventray.projections.PROJECTIONS``).

    With ``settings``, built for running (``Projection.build``: clients its ``enrich`` needs).
    """
    from eventray.projections import PROJECTIONS

    cls = PROJECTIONS.get(name)
    if cls is None:
        raise ConfigurationError(f"no projection named {name!r}; known: {', '.join(sorted(PROJECTIONS))}")
    return cls() if settings is None else cls.build(settings)


def runner_name(topic: str, name: str, version: int, partition: int) -> str:
    """The Ray actor name of the runner of ``name`` v``version`` on ``topic[partition]``."""
    return f"projection:{topic}:{name}:v{version}:{partition}"


def build_runner(settings: Settings, name: str, version: int, partition: int, *,
                 fault: FaultPoint | None = None) -> PartitionRunner:
    """A runner for a registered version (composition for the read path)."""
    from eventray.platform import composition
    from eventray.platform.eventlog.reader import PartitionReader
    from eventray.platform.projections.store import ProjectionStore

    store = ProjectionStore(settings.dsn)
    info = store.version_info(name, version)
    if info is None:
        raise ConfigurationError(f"projection {name!r} has no version {version}; start it with `eventray replay {name}`")

    def open_reader(p: int) -> PartitionReader:
        return PartitionReader(bootstrap=settings.kafka_address, topic=info.topic, partition=p,
                               client_id=f"eventray-projection-{name}-v{version}-{p}")

    return PartitionRunner(projection=projection(name, settings), store=store, decode_many=composition.event_codec().decode_many,
                           open_reader=open_reader, name=name, version=version, schema=info.schema,
                           partition=partition, fault=fault)


def _log_end(settings: Settings, partition: int) -> Any:
    """``() -> last stable offset`` of the runner's partition, for the lag metric."""
    from eventray.platform.eventlog.reader import PartitionReader

    reader: list[PartitionReader] = []

    def end() -> int:
        if not reader:
            reader.append(PartitionReader(bootstrap=settings.kafka_address, topic=settings.topic,
                                          partition=partition, client_id=f"eventray-metrics-{partition}"))
        return reader[0].last_stable_offset(timeout_s=5.0)

    return end


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)
class ProjectionRunnerActor:
    """Runs one :class:`PartitionRunner` on a thread; ``start`` begins (or resumes) it."""

    def __init__(self, settings: Settings, name: str, version: int, partition: int,
                 fault: FaultPoint | None = None, autostart: bool = True) -> None:
        from eventray.platform.observability import logs, metrics

        logs.configure(json_lines=settings.log_json)
        self._runner = build_runner(settings, name, version, partition, fault=fault)
        self._runner.on_batch = metrics.ProjectionBatchLog(name, partition, trace=settings.trace_commands)
        self._metrics = metrics.ProjectionExporter(name, partition, self._runner.describe,
                                                   _log_end(settings, self._runner.partition))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        # a restarted incarnation (after a crash) resumes at once; the first may wait for start()
        if autostart or ray.get_runtime_context().was_current_actor_reconstructed:
            self.start()

    def start(self) -> bool:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="projection-runner")
            self._thread.start()
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._runner.run(self._stop)
            except EventrayError as e:  # PostgreSQL or Kafka away: resume from stored offsets
                self._error = f"{type(e).__name__}: {e.message}"
                log.warning("projection runner %s v%d[%d]: %s; resuming in 1s", self._runner.name,
                            self._runner.version, self._runner.partition, self._error)
                self._stop.wait(1.0)
                continue
            except Exception as e:  # noqa: BLE001 - keep the actor alive; the error is reported
                self._error = f"{type(e).__name__}: {e}"
                log.exception("projection runner %s v%d[%d] failed; resuming in 1s", self._runner.name,
                              self._runner.version, self._runner.partition)
                self._stop.wait(1.0)
                continue
            return  # stopped on request or on a poison record

    def describe(self) -> dict[str, Any]:
        return {**self._runner.describe(), "running": bool(self._thread and self._thread.is_alive()),
                "error": self._error}

    def stop(self, timeout_s: float = 10.0) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            return not self._thread.is_alive()
        return True

    def pid(self) -> int:
        import os

        return os.getpid()


def start_runners(settings: Settings, name: str, version: int, partitions: int, *,
                  fault: FaultPoint | dict[int, FaultPoint] | None = None, autostart: bool = True,
                  wait: bool = True, actor_options: dict[str, Any] | None = None) -> list[Any]:
    """Create (or find) one runner actor per partition of ``name`` v``version``.

    ``actor_options`` adds Ray actor options, e.g. the placement from
    :func:`eventray.platform.composition.placement`.
    """
    from eventray.platform import composition

    composition.connect_ray(settings)
    handles = []
    for p in range(partitions):
        f = fault.get(p) if isinstance(fault, dict) else fault
        handles.append(ProjectionRunnerActor.options(
            name=runner_name(settings.topic, name, version, p), namespace=NAMESPACE,
            lifetime="detached", get_if_exists=True, **(actor_options or {}),
        ).remote(settings, name, version, p, f, autostart))
    if wait:
        ray.get([h.describe.remote() for h in handles])
    return handles


def stop_runners(settings: Settings, name: str, version: int, partitions: int) -> None:
    """Stop and remove the runner actors of ``name`` v``version`` (missing ones are skipped)."""
    from eventray.platform import composition

    composition.connect_ray(settings)
    for p in range(partitions):
        try:
            handle = ray.get_actor(runner_name(settings.topic, name, version, p), namespace=NAMESPACE)
        except ValueError:
            continue
        try:
            ray.get(handle.stop.remote(), timeout=15)
        except Exception as e:  # noqa: BLE001 - killing it below is the fallback
            log.warning("runner %s v%d[%d] did not stop cleanly: %s", name, version, p, e)
        ray.kill(handle, no_restart=True)
        time.sleep(0)


def stop_topic_runners(settings: Settings) -> int:
    """Stop every runner actor reading ``settings.topic`` (any projection, any version)."""
    from ray.util import list_named_actors

    from eventray.platform import composition

    composition.connect_ray(settings)
    prefix = f"projection:{settings.topic}:"
    stopped = 0
    for entry in list_named_actors(all_namespaces=True):
        if entry.get("namespace") != NAMESPACE or not entry.get("name", "").startswith(prefix):
            continue
        try:
            handle = ray.get_actor(entry["name"], namespace=NAMESPACE)
        except ValueError:
            continue
        try:
            ray.get(handle.stop.remote(), timeout=15)
        except Exception as e:  # noqa: BLE001 - killing it below is the fallback
            log.warning("runner %s did not stop cleanly: %s", entry["name"], e)
        ray.kill(handle, no_restart=True)
        stopped += 1
    return stopped
