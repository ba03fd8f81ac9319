"""The Ray shell around :class:`PartitionRunner`, and how runners are built, found and stopped.

A projection version runs as ``runners`` named, detached, restartable actors (the setting
``projection_runners``; 0 means one per partition). Runner ``i`` owns the partitions ``p``
with ``p % runners == i`` and applies each on a thread of its own, so ``describe`` and
``stop`` answer while it applies batches. The number of runners scales apart from the
partition count: :func:`start_runners` first stops every runner whose partitions change (it
finishes its batch), then starts the missing ones, so a partition never has two runners.
After a crash Ray restarts a runner with the same arguments; it resumes from the offsets
stored with the read model.
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

__all__ = ["NAMESPACE", "ProjectionRunnerActor", "build_runner", "projection", "runner_assignment",
           "runner_name", "runner_names", "start_runners", "stop_runners", "stop_topic_runners"]

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


def _prefix(topic: str, name: str, version: int) -> str:
    return f"projection:{topic}:{name}:v{version}:"


def runner_name(topic: str, name: str, version: int, index: int) -> str:
    """The Ray actor name of runner ``index`` of ``name`` v``version`` on ``topic``.

    With one runner per partition (the default) the index is the partition.
    """
    return f"{_prefix(topic, name, version)}{index}"


def runner_assignment(settings: Settings) -> list[list[int]]:
    """Partitions per runner actor: partition p goes to runner p % runners."""
    runners = settings.partitions if settings.projection_runners == 0 else settings.projection_runners
    runners = max(1, min(runners, settings.partitions))
    return [[p for p in range(settings.partitions) if p % runners == i] for i in range(runners)]


def runner_names(settings: Settings, name: str, version: int) -> dict[int, str]:
    """``{index: actor name}`` of the live runner actors of ``name`` v``version`` (any count)."""
    from eventray.platform.runtime.actors import indexed_actors

    return indexed_actors(_prefix(settings.topic, name, version))


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
    """Runs one :class:`PartitionRunner` per owned partition, each on a thread; ``start`` begins them."""

    def __init__(self, settings: Settings, name: str, version: int, partitions: list[int],
                 fault: FaultPoint | dict[int, FaultPoint] | None = None, autostart: bool = True) -> None:
        from eventray.platform.observability import logs, metrics

        logs.configure(json_lines=settings.log_json)
        self._name, self._version = name, version
        self._runners: dict[int, PartitionRunner] = {}
        self._exporters = []
        for p in partitions:
            f = fault.get(p) if isinstance(fault, dict) else fault
            runner = build_runner(settings, name, version, p, fault=f)
            runner.on_batch = metrics.ProjectionBatchLog(name, p, trace=settings.trace_commands)
            self._runners[p] = runner
            self._exporters.append(metrics.ProjectionExporter(name, p, runner.describe, _log_end(settings, p)))
        self._stop = threading.Event()
        self._threads: dict[int, threading.Thread] = {}
        self._errors: dict[int, str | None] = dict.fromkeys(partitions)
        # a restarted incarnation (after a crash) resumes at once; the first may wait for start()
        if autostart or ray.get_runtime_context().was_current_actor_reconstructed:
            self.start()

    def start(self) -> bool:
        for p, runner in self._runners.items():
            if p not in self._threads:
                self._threads[p] = threading.Thread(target=self._loop, args=(p, runner), daemon=True,
                                                    name=f"projection-runner-{p}")
                self._threads[p].start()
        return True

    def _loop(self, partition: int, runner: PartitionRunner) -> None:
        while not self._stop.is_set():
            try:
                runner.run(self._stop)
            except EventrayError as e:  # PostgreSQL or Kafka away: resume from stored offsets
                self._errors[partition] = f"{type(e).__name__}: {e.message}"
                log.warning("projection runner %s v%d[%d]: %s; resuming in 1s", self._name, self._version,
                            partition, self._errors[partition])
                self._stop.wait(1.0)
                continue
            except Exception as e:  # noqa: BLE001 - keep the actor alive; the error is reported
                self._errors[partition] = f"{type(e).__name__}: {e}"
                log.exception("projection runner %s v%d[%d] failed; resuming in 1s", self._name, self._version,
                              partition)
                self._stop.wait(1.0)
                continue
            return  # stopped on request or on a poison record

    def owned(self) -> list[int]:
        """The partitions this runner applies."""
        return sorted(self._runners)

    def describe(self) -> dict[str, Any]:
        """Per partition: the runner's progress, whether its thread runs, its last error.

        ``running`` is true when every owned partition's thread runs.
        """
        parts = {p: {**r.describe(), "running": bool((t := self._threads.get(p)) and t.is_alive()),
                     "error": self._errors.get(p)} for p, r in sorted(self._runners.items())}
        return {"name": self._name, "version": self._version, "partitions": parts,
                "running": bool(parts) and all(d["running"] for d in parts.values()),
                "applied": sum(d["applied"] for d in parts.values()),
                "dead_letters": sum(d["dead_letters"] for d in parts.values())}

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop after the batches in progress; True when every thread ended within ``timeout_s``."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads.values():
            t.join(max(0.0, deadline - time.monotonic()))
        for e in self._exporters:
            e.close()
        return not any(t.is_alive() for t in self._threads.values())

    def pid(self) -> int:
        import os

        return os.getpid()


def start_runners(settings: Settings, name: str, version: int, *,
                  fault: FaultPoint | dict[int, FaultPoint] | None = None, autostart: bool = True,
                  wait: bool = True, actor_options: dict[str, Any] | None = None,
                  changes: list[str] | None = None) -> list[Any]:
    """Bring the runner actors of ``name`` v``version`` to :func:`runner_assignment`; their handles.

    Runners whose partitions stay the same are left alone. Each one whose partitions change,
    or that is beyond the new count, is stopped first (its batches in flight commit or roll
    back) and removed; then the missing runners start and resume from the stored offsets. So
    a partition never has two runners (see :func:`eventray.platform.runtime.actors.place`).
    ``changes`` (when given) receives a line per change. ``actor_options`` adds Ray actor
    options, e.g. the placement from :func:`eventray.platform.composition.placement`.
    ``fault`` is a test hook, by partition.
    """
    from eventray.platform import composition
    from eventray.platform.runtime.actors import place

    composition.connect_ray(settings)

    def create(actor: str, parts: list[int]) -> Any:
        return ProjectionRunnerActor.options(  # type: ignore[attr-defined]  # added by @ray.remote
            name=actor, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, **(actor_options or {}),
        ).remote(settings, name, version, parts, fault, autostart)

    handles = place(_prefix(settings.topic, name, version), runner_assignment(settings), create,
                    what="projection runner", changes=changes)
    if wait:
        ray.get([h.describe.remote() for h in handles])
    return handles


def stop_runners(settings: Settings, name: str, version: int) -> None:
    """Stop and remove every runner actor of ``name`` v``version``, whatever their count."""
    from eventray.platform import composition
    from eventray.platform.runtime.actors import remove_all

    composition.connect_ray(settings)
    remove_all(_prefix(settings.topic, name, version))


def stop_topic_runners(settings: Settings) -> int:
    """Stop every runner actor reading ``settings.topic`` (any projection, any version)."""
    from eventray.platform import composition
    from eventray.platform.runtime.actors import remove_all

    composition.connect_ray(settings)
    return remove_all(f"projection:{settings.topic}:")
