"""Rebuild a projection beside the live one and switch to it atomically: ``eventray replay NAME``.

1. Register version n+1 (its own schema ``proj_<name>_v<n+1>``), offsets at 0.
2. Start one runner actor per partition; they replay from offset 0 in parallel and then keep
   tailing the log, so live writes are applied too.
3. When the new version is close to the log's head, try the switch: it succeeds only when
   the new version has read at least as far as the current one on every partition (checked
   in the switching transaction, with the current version's offsets locked).
4. Stop the old version's runners. Where projection hosts run (:mod:`.host`, placed by
   ``eventray deploy``), the new version's runners give way to them and the hosts take it on
   from its stored offsets; on a stack without hosts the new runners stay, as the live ones.
   Then drop the old version's schema.

Queries read the current version throughout (:func:`~.reads.read_current`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from eventray.platform.errors import EventrayError, ServiceUnavailable
from eventray.platform.projections.actor import start_runners, stop_runners
from eventray.platform.projections.host import host_group, host_group_of, refresh_hosts
from eventray.platform.projections.runner import FaultPoint
from eventray.platform.projections.store import ProjectionStore
from eventray.platform.tls import TLSFiles

__all__ = ["LogEnds", "ReplayFailed", "ReplayReport", "replay"]

log = logging.getLogger(__name__)


class ReplayFailed(EventrayError):
    """The new version could not be built (a runner stopped on a poison record, or a timeout)."""

    code = "REPLAY_FAILED"


class ReplayReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a replay did.

    ``events`` is the records the new version had applied when the switch committed;
    ``catch_up_s`` the time from starting its runners (all constructed) to the switch;
    ``startup_s`` the time to register the version and construct the runner actors;
    ``switch_s`` the time to stop the old runners and drop the old version.
    """

    name: str
    old_version: int | None
    new_version: int
    events: int
    catch_up_s: float
    startup_s: float
    switch_s: float
    events_per_s: float


class LogEnds:
    """The last stable offset of each partition of a topic (read_committed)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, *, tls: TLSFiles | None = None) -> None:
        from eventray.platform.eventlog.reader import PartitionReader

        self._readers = [PartitionReader(bootstrap=bootstrap, topic=topic, partition=p,
                                         client_id=f"eventray-lag-{topic}-{p}", tls=tls) for p in range(partitions)]

    def __call__(self) -> dict[int, int]:
        return {r.partition: r.last_stable_offset() for r in self._readers}

    def close(self) -> None:
        for r in self._readers:
            r.close()


def replay(
    rt: Any,
    name: str,
    *,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    switch_lag: int = 10_000,
    poll_s: float = 0.2,
    timeout_s: float = 3600.0,
    drop_old: bool = True,
    fault: FaultPoint | dict[int, FaultPoint] | None = None,
) -> ReplayReport:
    """Build the next version of projection ``name`` from offset 0 and make it current.

    Args:
        rt: the app's :class:`~eventray.platform.composition.Runtime` (effective settings).
        name: one of the app's projections.
        on_progress: called every ``poll_s`` with ``done``, ``total``, ``lag``, ``applied``,
            ``events_per_s`` and ``phase``.
        switch_lag: try to switch once the new version is at most this many offsets behind
            the log's head (the switch itself still requires it to be level with the old one).
        timeout_s: give up (the new version is left, status ``building``) after this long.
        drop_old: drop the old version's schema after the switch.
        fault: test hook passed to the new runners.

    Raises:
        ReplayFailed: a runner stopped on a poison record, or ``timeout_s`` passed.
    """
    from eventray.platform.migrations import migrate

    settings = rt.settings
    t0 = time.monotonic()
    migrate(settings.dsn)
    proj = rt.projection(name)
    rt.ensure_topic()
    store = ProjectionStore(settings.dsn)
    ends = LogEnds(settings.kafka_address, rt.topic, settings.partitions, tls=settings.tls_files())
    try:
        # the current version on this topic; one reading another topic is left alone (names are global)
        old = store.current_versions(rt.topic, [name]).get(name)
        info = store.create_version(name, ddl=proj.ddl, topic=rt.topic, partitions=settings.partitions,
                                    definition_version=type(proj).version)
        new = info.version
        handles = start_runners(rt, name, new, fault=fault, autostart=False)
        import ray

        ray.get([h.start.remote() for h in handles])
        t_start = time.monotonic()
        startup_s = t_start - t0
        caught_up_at = t_start
        applied_at_catch_up = 0
        while True:
            offsets, applied = store.progress(name, new)
            heads = ends()
            lag = sum(max(0, heads[p] - offsets.get(p, 0)) for p in heads)
            elapsed = time.monotonic() - t_start
            if on_progress is not None:
                on_progress({"done": sum(offsets.values()), "total": sum(heads.values()), "lag": lag,
                             "applied": applied, "events_per_s": applied / elapsed if elapsed > 0 else 0.0,
                             "phase": "catching up" if lag > switch_lag else "switching"})
            # A first version must reach the head; a rebuild may switch a little short of it,
            # since the switch itself requires it to be level with the current version.
            if (lag == 0 or (old is not None and lag <= switch_lag)) and store.switch(name, new):
                caught_up_at = time.monotonic()
                applied_at_catch_up = store.progress(name, new)[1]
                break
            vinfo = store.version_info(name, new)
            if vinfo is not None and vinfo.status == "stopped":
                raise ReplayFailed(f"projection {name!r} v{new} stopped on a poison record; see `eventray projections`",
                                   projection=name, version=new)
            if time.monotonic() - t0 > timeout_s:
                raise ReplayFailed(f"replay of {name!r} v{new} did not catch up within {timeout_s:.0f}s "
                                   f"(lag {lag})", projection=name, version=new)
            time.sleep(poll_s)
        switched = time.monotonic()
        catch_up_s = caught_up_at - t_start
        if old is not None and old != new:
            stop_runners(rt, name, old)
        # where projection hosts run, they apply the new version from here on (its builders give way)
        if host_group(rt.topic, host_group_of(rt, name)).live():
            stop_runners(rt, name, new)
            refresh_hosts(rt, name)
        if old is not None and old != new:
            if drop_old:
                time.sleep(0.2)  # readers holding the old pointer finish; later ones retry on the new
                store.drop_version(name, old)
        if on_progress is not None:
            offsets, applied = store.progress(name, new)
            on_progress({"done": sum(offsets.values()), "total": sum(offsets.values()), "lag": 0,
                         "applied": applied, "events_per_s": applied_at_catch_up / catch_up_s if catch_up_s else 0.0,
                         "phase": "live"})
        return ReplayReport(name=name, old_version=old, new_version=new, events=applied_at_catch_up,
                            catch_up_s=catch_up_s, startup_s=startup_s, switch_s=time.monotonic() - switched,
                            events_per_s=applied_at_catch_up / catch_up_s if catch_up_s > 0 else float("inf"))
    except ServiceUnavailable:
        raise
    finally:
        ends.close()
        store.close()
