"""The Ray shell around :class:`PartitionRunner`, and how runners are built, found and stopped.

A projection version runs as ``runners`` named, detached, restartable async actors (the
setting ``projection_runners``; 0 means one per partition), one group of the
partitioned-actor runtime (:mod:`eventray.platform.runtime.actors`). Runner ``i`` owns the
partitions ``p`` with ``p % runners == i`` and applies each on a thread of its own (the
Kafka reader blocks), so ``describe`` and ``release`` answer on the actor's loop while it
applies batches. The number of runners scales apart from the partition count:
:func:`start_runners` first releases every runner whose partitions change (it finishes its
batch), then starts the missing ones, so a partition never has two runners. After a crash
Ray restarts a runner with the same arguments; it resumes from the offsets stored with the
read model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import ray

from eventray.platform.errors import ConfigurationError, EventrayError
from eventray.platform.projections.runner import FaultPoint, PartitionRunner
from eventray.platform.runtime.actors import ACTOR_DEFAULTS, NAMESPACE, ActorGroup, assignment, group_prefix
from eventray.platform.settings import Settings

__all__ = ["ProjectionRunnerActor", "build_runner", "runner_assignment", "runner_group", "runner_name",
           "start_runners", "stop_runners", "stop_topic_runners"]

log = logging.getLogger("eventray.projection")


def runner_group(topic: str, name: str, version: int) -> ActorGroup:
    """The runner actors of projection ``name`` v``version`` on ``topic``."""
    return ActorGroup(group_prefix("projection", topic, name, f"v{version}"), "projection runner")


def runner_name(topic: str, name: str, version: int, index: int) -> str:
    """The Ray actor name of runner ``index`` of ``name`` v``version`` on ``topic``.

    With one runner per partition (the default) the index is the partition.
    """
    return runner_group(topic, name, version).name(index)


def runner_assignment(settings: Settings) -> list[list[int]]:
    """Partitions per runner actor: partition p goes to runner p % runners (0 runners: one each)."""
    runners = settings.projection_runners or settings.partitions
    return assignment(settings.partitions, runners)


def build_runner(rt: Any, name: str, version: int, partition: int, *,
                 fault: FaultPoint | None = None) -> PartitionRunner:
    """A runner for a registered version of the app's projection ``name``."""
    from eventray.platform.projections.store import ProjectionStore

    store = ProjectionStore(rt.settings.dsn)
    info = store.version_info(name, version)
    if info is None:
        raise ConfigurationError(f"projection {name!r} has no version {version}; start it with `eventray replay {name}`")

    def open_reader(p: int) -> Any:
        return rt.reader(p, topic=info.topic, client_id=f"eventray-projection-{name}-v{version}-{p}")

    return PartitionRunner(projection=rt.projection(name, build=True), store=store,
                           decode_many=rt.codec.decode_many, open_reader=open_reader, name=name, version=version,
                           schema=info.schema, partition=partition, fault=fault)


def _log_end(rt: Any, partition: int) -> Any:
    """``() -> last stable offset`` of the runner's partition, for the lag metric."""
    reader: list[Any] = []

    def end() -> int:
        if not reader:
            reader.append(rt.reader(partition, client_id=f"eventray-metrics-{partition}"))
        return reader[0].last_stable_offset(timeout_s=5.0)

    return end


@ray.remote(**ACTOR_DEFAULTS)
class ProjectionRunnerActor:
    """Runs one :class:`PartitionRunner` per owned partition, each on a thread; ``start`` begins them."""

    def __init__(self, settings: Settings, name: str, version: int, partitions: list[int],
                 fault: FaultPoint | dict[int, FaultPoint] | None = None, autostart: bool = True) -> None:
        from eventray.platform.composition import Runtime
        from eventray.platform.observability import logs, metrics

        logs.configure(json_lines=settings.log_json)
        rt = Runtime.load(settings)
        self._name, self._version = name, version
        self._runners: dict[int, PartitionRunner] = {}
        self._exporter = metrics.Exporter()
        for p in partitions:
            f = fault.get(p) if isinstance(fault, dict) else fault
            runner = build_runner(rt, name, version, p, fault=f)
            runner.on_batch = metrics.ProjectionBatchLog(name, p, trace=settings.trace_commands)
            self._runners[p] = runner
            self._exporter.add(metrics.ProjectionMetrics(name, p, runner.describe, _log_end(rt, p)).export)
        self._stop = threading.Event()
        self._threads: dict[int, threading.Thread] = {}
        self._errors: dict[int, str | None] = dict.fromkeys(partitions)
        # a restarted incarnation (after a crash) resumes at once; the first may wait for start()
        if autostart or ray.get_runtime_context().was_current_actor_reconstructed:
            self._start_threads()

    async def start(self) -> bool:
        self._start_threads()
        return True

    def _start_threads(self) -> None:
        for p, runner in self._runners.items():
            if p not in self._threads:
                self._threads[p] = threading.Thread(target=self._loop, args=(p, runner), daemon=True,
                                                    name=f"projection-runner-{p}")
                self._threads[p].start()

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

    async def owned(self) -> dict[str, Any]:
        """The partitions this runner applies."""
        return {"partitions": sorted(self._runners), "serving": not self._stop.is_set()}

    async def ready(self) -> dict[str, Any]:
        return self._describe()

    async def describe(self) -> dict[str, Any]:
        return self._describe()

    def _describe(self) -> dict[str, Any]:
        """Per partition: the runner's progress, whether its thread runs, its last error.

        ``running`` is true when every owned partition's thread runs.
        """
        parts = {p: {**r.describe(), "running": bool((t := self._threads.get(p)) and t.is_alive()),
                     "error": self._errors.get(p)} for p, r in sorted(self._runners.items())}
        return {"name": self._name, "version": self._version, "partitions": parts,
                "running": bool(parts) and all(d["running"] for d in parts.values()),
                "applied": sum(d["applied"] for d in parts.values()),
                "dead_letters": sum(d["dead_letters"] for d in parts.values())}

    async def release(self, timeout_s: float = 10.0) -> bool:
        """Stop after the batches in progress; True when every thread ended within ``timeout_s``."""
        self._stop.set()
        self._exporter.close()
        deadline = time.monotonic() + timeout_s

        def join() -> bool:
            for t in self._threads.values():
                t.join(max(0.0, deadline - time.monotonic()))
            return not any(t.is_alive() for t in self._threads.values())

        return await asyncio.to_thread(join)

    async def stop(self, timeout_s: float = 10.0) -> bool:
        """:meth:`release` (the name tests and older callers use)."""
        return await self.release(timeout_s)

    def pid(self) -> int:
        import os

        return os.getpid()

    def hold_memory(self, mb: int) -> int:
        """Chaos (``oom-runner``): keep ``mb`` MiB more of memory (:func:`~eventray.platform.runtime.actors.hold_memory`)."""
        from eventray.platform.runtime.actors import hold_memory

        return hold_memory(mb)


def start_runners(rt: Any, name: str, version: int, *,
                  fault: FaultPoint | dict[int, FaultPoint] | None = None, autostart: bool = True,
                  wait: bool = True, changes: list[str] | None = None) -> list[Any]:
    """Bring the runner actors of ``name`` v``version`` to :func:`runner_assignment`; their handles.

    ``rt`` is the app's :class:`~eventray.platform.composition.Runtime`. Runners whose
    partitions stay the same are left alone. Each one whose partitions change, or that is
    beyond the new count, is released first (its batches in flight commit or roll back) and
    removed; then the missing runners start and resume from the stored offsets. So a
    partition never has two runners (:meth:`ActorGroup.place`). ``changes`` (when given)
    receives a line per change. ``fault`` is a test hook, by partition.
    """
    rt.connect_ray()
    options = rt.actor_options()

    def create(actor: str, parts: list[int]) -> Any:
        return ProjectionRunnerActor.options(  # type: ignore[attr-defined]  # added by @ray.remote
            name=actor, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, **options,
        ).remote(rt.settings, name, version, parts, fault, autostart)

    return runner_group(rt.topic, name, version).place(runner_assignment(rt.settings), create, changes=changes,
                                                       wait=wait)


def stop_runners(rt: Any, name: str, version: int) -> int:
    """Release and remove every runner actor of ``name`` v``version``, whatever their count."""
    rt.connect_ray()
    return runner_group(rt.topic, name, version).remove_all()


def stop_topic_runners(rt: Any) -> int:
    """Release and remove every runner actor reading the app's topic (any projection, any version)."""
    from eventray.platform.runtime.actors import remove_prefixed

    rt.connect_ray()
    return remove_prefixed(group_prefix("projection", rt.topic))
