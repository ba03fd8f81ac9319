"""Projection hosts: one read of each partition feeds every projection hosted on it.

A host is a named, detached, restartable Ray actor of the partitioned-actor runtime
(:mod:`eventray.platform.runtime.actors`). Host ``i`` of ``n`` (the setting
``projection_hosts``) owns the partitions ``p`` with ``p % n == i``. It tails them with one
consumer (:class:`~eventray.platform.eventlog.reader.PartitionsReader`), decodes each batch
once, and hands it to every projection it hosts: each one's :class:`PartitionRunner` folds it
and commits its rows and its offset in its own PostgreSQL transaction, so one projection's
rollback never touches another's, and each resumes from its own stored offsets.

Which projections a host applies is read from the store, not passed in: the current
version of each projection of its group (:func:`host_groups`). A restarted host (after a
crash) therefore hosts what is current, and :meth:`ProjectionHostActor.refresh` (called
after a replay's switch and by ``eventray deploy``) takes a new version on and drops a
retired one. The app's plain projections share the host group ``main``; a projection with an
``enrich`` step (it waits on a model) gets a group of its own, so a slow model never holds
back the plain read models.

A projection that fails on a host is isolated there: a record its handlers raise on is
dead-lettered as on a dedicated runner; a projection that stops on a poison record, or
whose batch fails in a way that is not the services being away, is **parked**: the host
stops applying it, keeps applying the others, and the version's status says why
(``eventray projections``). ``eventray deploy`` (or :func:`place_hosts`) takes it on again.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

import msgspec
import ray

from eventray.platform.errors import EventrayError, ServiceUnavailable
from eventray.platform.projections.enrich import StaleRunner
from eventray.platform.projections.runner import FaultPoint, PartitionRunner
from eventray.platform.runtime.actors import ACTOR_DEFAULTS, NAMESPACE, ActorGroup, assignment, group_prefix
from eventray.platform.settings import Settings

__all__ = ["MAIN_GROUP", "HostFault", "ProjectionHostActor", "applying_group", "host_assignment",
           "hosting_group", "host_group", "host_group_of",
           "host_groups", "place_hosts", "refresh_hosts", "stop_hosts"]

log = logging.getLogger("eventray.projection")

#: the host group of the app's projections without an ``enrich`` step
MAIN_GROUP = "main"


class HostFault(msgspec.Struct, frozen=True, kw_only=True):
    """Test hooks of a host: crash at a batch of one projection, make one's handlers raise, or its batches.

    Attributes:
        crash: ``{projection name: FaultPoint}`` (by partition: the host's first partition).
        failing: projections whose every handler raises ``RuntimeError`` on this host.
        broken: projections whose every batch raises ``RuntimeError`` outside the handlers.
    """

    crash: dict[str, FaultPoint] = {}
    failing: list[str] = []
    broken: list[str] = []


def host_group_of(rt: Any, name: str) -> str:
    """The host group of projection ``name``: ``main``, or its own name when it enriches."""
    return name if rt.projection(name).enriches else MAIN_GROUP


def host_groups(rt: Any, names: list[str] | None = None) -> dict[str, list[str]]:
    """``{group: projection names}`` of the app's projections (or of ``names``)."""
    groups: dict[str, list[str]] = {}
    for name in names if names is not None else list(rt.app.projections):
        groups.setdefault(host_group_of(rt, name), []).append(name)
    return groups


def host_group(topic: str, group: str) -> ActorGroup:
    """The host actors of host group ``group`` on ``topic``."""
    return ActorGroup(group_prefix("projection", topic, f"host-{group}"), "projection host")


def host_assignment(settings: Settings) -> list[list[int]]:
    """Partitions per host: partition p goes to host p % hosts (0 hosts: one per partition)."""
    return assignment(settings.partitions, settings.projection_hosts or settings.partitions)


class _Member:
    """One hosted projection version: a runner per partition of the host, parked or not."""

    def __init__(self, name: str, version: int, runners: dict[int, PartitionRunner]) -> None:
        self.name, self.version, self.runners = name, version, runners
        self.parked: str | None = None

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()


@ray.remote(**ACTOR_DEFAULTS)
class ProjectionHostActor:
    """Applies every current projection of its group to its partitions, from one read of each."""

    def __init__(self, settings: Settings, group: str, names: list[str], partitions: list[int],
                 fault: HostFault | None = None, autostart: bool = True) -> None:
        from eventray.platform.composition import Runtime
        from eventray.platform.observability import logs, metrics
        from eventray.platform.projections.store import ProjectionStore

        logs.configure(json_lines=settings.log_json)
        self._rt = Runtime.load(settings)
        self._group, self._names, self._partitions = group, list(names), list(partitions)
        self._fault = fault or HostFault()
        self._store = ProjectionStore(settings.dsn)  # membership reads, on the host's thread only
        self._members: dict[tuple[str, int], _Member] = {}
        self._lock = threading.Lock()  # members change on the thread; describe reads them on the loop
        self._refresh_wanted = threading.Event()
        self._refresh_done = threading.Condition()
        self._refreshes = 0
        self._stop = threading.Event()
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self._metrics: dict[tuple[str, int, int], Any] = {}
        self._ends_reader: Any = None
        self._ends: dict[int, int] = {}
        self._resync = False  # a member was parked or dropped: pause the partitions nobody reads
        self._exporter = metrics.Exporter()
        self._exporter.add(self._export)
        if autostart or ray.get_runtime_context().was_current_actor_reconstructed:
            self._start()

    # --- protocol of the partitioned-actor runtime ------------------------------------------

    async def start(self) -> bool:
        self._start()
        return True

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name=f"projection-host-{self._group}")
            self._thread.start()

    async def owned(self) -> dict[str, Any]:
        """The partitions this host applies."""
        return {"partitions": list(self._partitions), "serving": not self._stop.is_set()}

    async def ready(self) -> dict[str, Any]:
        return self._describe()

    async def describe(self) -> dict[str, Any]:
        return self._describe()

    async def refresh(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Take on the current versions of the group's projections (parked ones again), drop retired ones.

        Returns :meth:`describe` once the host's thread has done it (within ``timeout_s``).
        """
        import asyncio

        with self._refresh_done:
            target = self._refreshes + 1
        self._refresh_wanted.set()

        def wait() -> bool:
            with self._refresh_done:
                return self._refresh_done.wait_for(lambda: self._refreshes >= target or self._stop.is_set(),
                                                   timeout_s)

        if not await asyncio.to_thread(wait):
            raise ServiceUnavailable(f"projection host {self._group} did not refresh within {timeout_s:.0f}s "
                                     f"({self._error or 'no error reported'})")
        return self._describe()

    async def release(self, timeout_s: float = 10.0) -> bool:
        """Stop after the batch in progress; True when the host's thread ended within ``timeout_s``."""
        import asyncio

        self._stop.set()
        self._exporter.close()
        thread = self._thread
        if thread is None:
            return True
        await asyncio.to_thread(thread.join, timeout_s)
        return not thread.is_alive()

    async def stop(self, timeout_s: float = 10.0) -> bool:
        return await self.release(timeout_s)

    def pid(self) -> int:
        import os

        return os.getpid()

    def hold_memory(self, mb: int) -> int:
        """Chaos (``oom-runner``): keep ``mb`` MiB more of memory (:func:`~eventray.platform.runtime.actors.hold_memory`)."""
        from eventray.platform.runtime.actors import hold_memory

        return hold_memory(mb)

    def _describe(self) -> dict[str, Any]:
        """The host's partitions, and per hosted projection version its runners' progress."""
        with self._lock:
            members = list(self._members.values())
        hosted = {}
        for m in members:
            parts = {p: r.describe() for p, r in sorted(m.runners.items())}
            hosted[f"{m.name} v{m.version}"] = {
                "name": m.name, "version": m.version, "parked": m.parked, "partitions": parts,
                "applied": sum(d["applied"] for d in parts.values()),
                "dead_letters": sum(d["dead_letters"] for d in parts.values())}
        thread = self._thread
        return {"group": self._group, "partitions": list(self._partitions), "projections": hosted,
                "running": bool(thread and thread.is_alive()) and not self._stop.is_set(), "error": self._error,
                "applied": sum(h["applied"] for h in hosted.values()),
                "dead_letters": sum(h["dead_letters"] for h in hosted.values())}

    # --- the host's thread ------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._run()
                self._error = None
                return
            except EventrayError as e:  # PostgreSQL or Kafka away: resume from stored offsets
                self._error = f"{type(e).__name__}: {e.message}"
                log.warning("projection host %s %s: %s; resuming in 1s", self._group, self._partitions, self._error)
            except Exception as e:  # noqa: BLE001 - keep the actor alive; the error is reported
                self._error = f"{type(e).__name__}: {e}"
                log.exception("projection host %s %s failed; resuming in 1s", self._group, self._partitions)
            self._stop.wait(1.0)

    def _run(self) -> None:
        from eventray.platform.eventlog.reader import make_partitions_reader

        rt = self._rt
        reader = make_partitions_reader(rt.settings.kafka_client, rt.settings.kafka_address, rt.topic, self._partitions,
                                        client_id=f"eventray-projection-host-{self._group}-{self._partitions[0]}",
                                        tls=rt.settings.tls_files())
        decode_many = rt.codec.decode_many
        try:
            # after an error the stored offsets are the truth (a COMMIT may have landed unseen)
            for member in list(self._members.values()):
                if any(r.resume() is None for r in member.runners.values()):
                    self._drop(member)
            self._refresh(reader, reset_parked=False)
            while not self._stop.is_set():
                if self._refresh_wanted.is_set():
                    self._refresh(reader, reset_parked=True)
                elif self._resync:
                    self._sync_reader(reader, seek=False)
                got = reader.poll()
                for p, batch in got.items():
                    runners = self._active(p)
                    if runners:
                        decoded = decode_many(batch, partition=p)
                        for member, runner in runners:
                            self._apply(member, runner, batch, decoded)
                for p in self._partitions:
                    if p not in got:
                        position = None
                        for member, runner in self._active(p):
                            position = reader.position(p) if position is None else position
                            self._guarded(member, runner.store_idle_position, position)
        finally:
            reader.close()

    def _active(self, partition: int) -> list[tuple[_Member, PartitionRunner]]:
        return [(m, m.runners[partition]) for m in self._members.values()
                if m.parked is None and partition in m.runners]

    def _apply(self, member: _Member, runner: PartitionRunner, batch: list[Any], decoded: list[Any]) -> None:
        ok = self._guarded(member, runner.process, batch, decoded)
        if ok is False:
            poison = runner.stopped_on
            self._park(member, f"stopped on poison record {poison.partition}:{poison.offset}: {poison.reason}"
                       if poison else "stopped", status_set=True)

    def _guarded(self, member: _Member, call: Any, *args: Any) -> Any:
        """Run one member's step; a failure that is its own parks it, the services being away is raised."""
        try:
            return call(*args)
        except StaleRunner as e:
            offsets = self._store.load_offsets(member.name, member.version)
            if any(o < 0 for o in offsets.values()):  # a switch retired it: another version is current
                log.info("projection host %s: %s v%d retired by a switch; dropped", self._group, member.name,
                         member.version)
                self._drop(member)
            else:
                self._park(member, f"another runner writes it: {e.message}")
        except ServiceUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - isolate the projection; the others go on
            log.exception("projection host %s: %s v%d failed", self._group, member.name, member.version)
            self._park(member, f"{type(e).__name__}: {getattr(e, 'message', None) or e}")
        return None

    def _park(self, member: _Member, reason: str, *, status_set: bool = False) -> None:
        member.parked = reason
        self._resync = True
        log.error("projection host %s: %s v%d parked: %s (the other projections go on; `eventray deploy` takes it "
                  "on again)", self._group, member.name, member.version, reason)
        if not status_set:
            self._store.set_status(member.name, member.version, "stopped", f"parked on its host: {reason}")

    def _drop(self, member: _Member) -> None:
        with self._lock:
            if self._members.get((member.name, member.version)) is member:
                del self._members[(member.name, member.version)]
        member.close()
        self._resync = True

    def _refresh(self, reader: Any, *, reset_parked: bool) -> None:
        """Host the current version of each projection of the group; seek each partition to the lowest offset."""
        self._refresh_wanted.clear()
        current = self._store.current_versions(self._rt.topic, self._names)
        wanted = {(n, v) for n, v in current.items()}
        for key in [k for k in self._members if k not in wanted]:
            self._drop(self._members[key])
        for name, version in sorted(wanted):
            member = self._members.get((name, version))
            if member is not None and not (reset_parked and member.parked):
                continue
            member = self._build(name, version)
            if member is None:
                continue
            if reset_parked:
                info = self._store.version_info(name, version)
                if info is not None and info.status == "stopped":
                    self._store.set_status(name, version, "live", None)
            with self._lock:
                old = self._members.get((name, version))
                self._members[(name, version)] = member
            if old is not None:  # a parked one, rebuilt
                old.close()
        self._sync_reader(reader, seek=True)
        with self._refresh_done:
            self._refreshes += 1
            self._refresh_done.notify_all()
        log.info("projection host %s %s hosts %s", self._group, self._partitions,
                 ", ".join(f"{n} v{v}" for n, v in sorted(self._members)) or "nothing")

    def _sync_reader(self, reader: Any, *, seek: bool) -> None:
        """Read each partition some hosted projection applies (from the lowest offset, with ``seek``); pause the rest."""
        self._resync = False
        for p in self._partitions:
            offsets = [r.next_offset for m, r in self._active(p) if r.next_offset is not None]
            if not offsets:
                reader.pause(p)  # else the consumer would fetch it from the log's start
            else:
                if seek:
                    reader.seek(p, min(offsets))
                reader.resume(p)

    def _build(self, name: str, version: int) -> _Member | None:
        from eventray.platform.observability import metrics
        from eventray.platform.projections.actor import build_runner

        runners: dict[int, PartitionRunner] = {}
        crash = self._fault.crash.get(name)
        for i, p in enumerate(self._partitions):
            runner = build_runner(self._rt, name, version, p, fault=crash if i == 0 else None)
            if name in self._fault.failing:
                runner._handlers = {t: _raising for t in runner._handlers}
            if name in self._fault.broken:
                runner.process = _broken  # type: ignore[method-assign]
            if runner.resume() is None:  # retired meanwhile
                return None
            runner.on_batch = metrics.ProjectionBatchLog(name, p, trace=self._rt.settings.trace_commands)
            runners[p] = runner
        return _Member(name, version, runners)

    # --- metrics: one thread per process, one end-offsets request per round -------------------

    def _export(self) -> None:
        from eventray.platform.eventlog.reader import PartitionsReader
        from eventray.platform.observability import metrics

        with self._lock:
            members = list(self._members.values())
        if not members:
            return
        if self._ends_reader is None:
            self._ends_reader = PartitionsReader(self._rt.settings.kafka_address, self._rt.topic, self._partitions,
                                                 client_id=f"eventray-metrics-host-{self._group}",
                                                 tls=self._rt.settings.tls_files())
        self._ends.update(self._ends_reader.last_stable_offsets())  # in place: the gauges hold its __getitem__
        for m in members:
            for p, runner in m.runners.items():
                key = (m.name, m.version, p)
                if key not in self._metrics:
                    self._metrics[key] = metrics.ProjectionMetrics(m.name, p, runner.describe,
                                                                   functools.partial(self._ends.__getitem__, p))
                self._metrics[key].export()


def _raising(record: Any, out: Any) -> None:
    raise RuntimeError(f"test fault: this handler raises on every event ({type(record.event).__name__})")


def _broken(batch: Any, decoded: Any = None) -> bool:
    raise RuntimeError("test fault: every batch of this projection fails")


def applying_group(topic: str, name: str, version: int) -> ActorGroup | None:
    """The live actors that apply ``name`` v``version``: its dedicated runners, else its group's hosts.

    Which host group a projection is in depends on the app (``enrich``); this looks for live
    hosts of ``main`` or of a group named after the projection. ``None`` when neither runs.
    """
    from eventray.platform.projections.actor import runner_group

    runners = runner_group(topic, name, version)
    return runners if runners.live() else hosting_group(topic, name)


def hosting_group(topic: str, name: str) -> ActorGroup | None:
    """The live host group that would apply projection ``name``: the one named after it, else ``main``."""
    for group in (host_group(topic, name), host_group(topic, MAIN_GROUP)):
        if group.live():
            return group
    return None


def place_hosts(rt: Any, *, names: list[str] | None = None, fault: HostFault | None = None,
                changes: list[str] | None = None, wait: bool = True) -> dict[str, list[Any]]:
    """Bring the host groups of the app's projections (or of ``names``) to :func:`host_assignment`.

    The dedicated runners of the hosted projections' current versions (a replay leaves them
    live when no host runs) are released first, then the hosts are placed (a partition never
    has two hosts: :meth:`ActorGroup.place`) and refreshed, so each hosts what is current now
    and takes parked projections on again. Returns ``{group: host handles}``.
    """
    from eventray.platform.projections.actor import runner_group, stop_runners
    from eventray.platform.projections.store import ProjectionStore

    rt.connect_ray()
    options = rt.actor_options()
    # a host applies every projection of its group that has a current version, not only ``names``
    touched = set(host_groups(rt, names))
    groups = {g: members for g, members in host_groups(rt).items() if g in touched}
    store = ProjectionStore(rt.settings.dsn)
    try:
        current = store.current_versions(rt.topic, [n for ns in groups.values() for n in ns])
    finally:
        store.close()
    placed: dict[str, list[Any]] = {}
    for group, members in groups.items():
        for name in members:
            if name in current and runner_group(rt.topic, name, current[name]).live():
                n = stop_runners(rt, name, current[name])
                if changes is not None:
                    changes.append(f"removed {n} dedicated runner(s) of {name} v{current[name]}: its host applies it")

        def create(actor: str, parts: list[int], group: str = group, members: list[str] = members) -> Any:
            return ProjectionHostActor.options(  # type: ignore[attr-defined]  # added by @ray.remote
                name=actor, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, **options,
            ).remote(rt.settings, group, members, parts, fault)

        handles = host_group(rt.topic, group).place(host_assignment(rt.settings), create, changes=changes, wait=wait)
        if wait:
            ray.get([h.refresh.remote() for h in handles])
        placed[group] = handles
    return placed


def refresh_hosts(rt: Any, name: str) -> int:
    """Ask the live hosts of projection ``name``'s group to take on its current version; how many there are."""
    handles = list(host_group(rt.topic, host_group_of(rt, name)).handles().values())
    if handles:
        ray.get([h.refresh.remote() for h in handles])
    return len(handles)


def stop_hosts(rt: Any) -> int:
    """Release and remove every projection host of the app's topic."""
    from eventray.platform.runtime.actors import remove_prefixed

    rt.connect_ray()
    return remove_prefixed(f"{group_prefix('projection', rt.topic)}host-")
