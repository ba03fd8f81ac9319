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


def runner_name(topic: str, name: str, version: int, index: int) -> str:
    """The Ray actor name of runner ``index`` of ``name`` v``version`` on ``topic``.

    With one runner per partition (the default) the index is the partition.
    """
    return f"projection:{topic}:{name}:v{version}:{index}"


def runner_assignment(settings: Settings) -> list[list[int]]:
    """Partitions per runner actor: partition p goes to runner p % runners."""
    runners = settings.partitions if settings.projection_runners == 0 else settings.projection_runners
    runners = max(1, min(runners, settings.partitions))
    return [[p for p in range(settings.partitions) if p % runners == i] for i in range(runners)]


def runner_names(settings: Settings, name: str, version: int) -> dict[int, str]:
    """``{index: actor name}`` of the live runner actors of ``name`` v``version`` (any count)."""
    from ray.util import list_named_actors

    prefix = f"projection:{settings.topic}:{name}:v{version}:"
    out: dict[int, str] = {}
    for entry in list_named_actors(all_namespaces=True):
        actor = entry.get("name", "")
        if entry.get("namespace") == NAMESPACE and actor.startswith(prefix) and actor[len(prefix):].isdigit():
            out[int(actor[len(prefix):])] = actor
    return out


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


def _remove(handle: Any, label: str) -> None:
    """Stop a runner actor after its current batches, then kill it (no restart)."""
    try:
        ray.get(handle.stop.remote(), timeout=15)
    except Exception as e:  # noqa: BLE001 - killing it below is the fallback; a killed batch rolls back
        log.warning("runner %s did not stop cleanly: %s", label, e)
    ray.kill(handle, no_restart=True)


def _wait_names_free(settings: Settings, name: str, version: int, names: set[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s  # a killed actor frees its name a little later
    while names & set(runner_names(settings, name, version).values()) and time.monotonic() < deadline:
        time.sleep(0.05)


def start_runners(settings: Settings, name: str, version: int, *,
                  fault: FaultPoint | dict[int, FaultPoint] | None = None, autostart: bool = True,
                  wait: bool = True, actor_options: dict[str, Any] | None = None,
                  changes: list[str] | None = None) -> list[Any]:
    """Bring the runner actors of ``name`` v``version`` to :func:`runner_assignment`; their handles.

    Runners whose partitions stay the same are left alone. Each one whose partitions change,
    or that is beyond the new count, is stopped first (its batches in flight commit or roll
    back) and removed; then the missing runners start and resume from the stored offsets. So
    a partition never has two runners. ``changes`` (when given) receives a line per change.
    ``actor_options`` adds Ray actor options, e.g. the placement from
    :func:`eventray.platform.composition.placement`. ``fault`` is a test hook, by partition.
    """
    from eventray.platform import composition

    composition.connect_ray(settings)
    desired = runner_assignment(settings)
    removed: set[str] = set()
    for index, actor in sorted(runner_names(settings, name, version).items()):
        handle = ray.get_actor(actor, namespace=NAMESPACE)
        owned: list[int] | None
        try:
            owned = ray.get(handle.owned.remote(), timeout=30)
        except Exception as e:  # noqa: BLE001 - unreachable or still starting after a failure: replace it
            log.warning("runner %s did not answer (%s); replacing it", actor, e)
            owned = None
        if index < len(desired) and owned == desired[index]:
            continue
        _remove(handle, actor)
        removed.add(actor)
        if changes is not None:
            changes.append(f"removed projection runner {actor} (partitions {owned})")
    _wait_names_free(settings, name, version, removed)
    live = set(runner_names(settings, name, version).values())
    handles = []
    for index, parts in enumerate(desired):
        actor = runner_name(settings.topic, name, version, index)
        handles.append(ProjectionRunnerActor.options(  # type: ignore[attr-defined]  # added by @ray.remote
            name=actor, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, **(actor_options or {}),
        ).remote(settings, name, version, parts, fault, autostart))
        if changes is not None and actor not in live:
            changes.append(f"started projection runner {actor} (partitions {parts})")
    if wait:
        ray.get([h.describe.remote() for h in handles])
    return handles


def stop_runners(settings: Settings, name: str, version: int) -> None:
    """Stop and remove every runner actor of ``name`` v``version``, whatever their count."""
    from eventray.platform import composition

    composition.connect_ray(settings)
    names = runner_names(settings, name, version)
    for actor in names.values():
        try:
            handle = ray.get_actor(actor, namespace=NAMESPACE)
        except ValueError:
            continue
        _remove(handle, actor)
    _wait_names_free(settings, name, version, set(names.values()))


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
        _remove(handle, entry["name"])
        stopped += 1
    return stopped
