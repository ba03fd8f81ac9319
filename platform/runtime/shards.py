"""The shard actors of an app: placed, rescaled and reached through the partitioned-actor runtime.

``EVENTRAY_SHARDS`` shard actors split the event topic's partitions (shard i owns the
partitions p with p % shards == i). :func:`start_shards` brings them to that assignment:
a shard whose partitions change is released first (it stops taking commands, finishes its
batch, snapshots and closes its producers) and removed; only then do the new ones start,
and each one's ``init_transactions`` fences whatever may still hold its partitions'
transactional ids. So a partition has at most one writer, and routers learn the new owners
from the actors themselves (:class:`RayShardTransport`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from eventray.platform.runtime.actors import NAMESPACE, ActorGroup, assignment, group_prefix
from eventray.platform.runtime.bus import ShardTransport

log = logging.getLogger("eventray.shards")

__all__ = ["RayShardTransport", "shard_assignment", "shard_group", "shard_name", "start_shards", "stop_shards"]


def shard_group(topic: str) -> ActorGroup:
    return ActorGroup(group_prefix("shard", topic), "shard")


def shard_name(topic: str, index: int) -> str:
    """The Ray actor name of shard ``index`` of ``topic``."""
    return shard_group(topic).name(index)


def shard_assignment(rt: Any) -> list[list[int]]:
    """Partitions per shard actor: partition p goes to shard p % shards."""
    return assignment(rt.settings.partitions, rt.settings.shards)


def start_shards(rt: Any, *, wait: bool = True, changes: list[str] | None = None) -> list[Any]:
    """Bring the shard actors of ``rt`` (a :class:`~eventray.platform.composition.Runtime`) to
    :func:`shard_assignment`, and (with ``wait``) until they have recovered; their handles.

    Idempotent: shards that already own the right partitions are left alone.
    """
    from eventray.platform.runtime.shard_actor import AggregateShard

    rt.connect_ray()
    rt.ensure_topic()
    options = rt.actor_options()

    def create(name: str, parts: list[int]) -> Any:
        return AggregateShard.options(  # type: ignore[attr-defined]  # added by @ray.remote
            name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, **options,
        ).remote(rt.settings, parts)

    return shard_group(rt.topic).place(shard_assignment(rt), create, changes=changes, wait=wait)


def rescale_shards(rt: Any) -> list[str]:
    """:func:`start_shards`, returning a line per shard removed or started."""
    changes: list[str] = []
    start_shards(rt, changes=changes)
    return changes


def stop_shards(rt: Any) -> int:
    """Release and remove the shard actors of the app's topic (they flush their snapshots); how many."""
    rt.connect_ray()
    return shard_group(rt.topic).remove_all()


class RayShardTransport(ShardTransport):
    """Reaches shard actors by name and learns which one owns each partition.

    It starts from the assignment in the settings and looks the owners up again (each live
    shard actor says which partitions it serves) whenever a call fails: after a reassignment
    an actor answers :class:`PartitionMoved` (nothing applied) and the call is resent once to
    the new owner; after an actor died the call fails retryably, as it may have been applied,
    and the client resends it with the same ``command_id``.
    """

    def __init__(self, rt: Any) -> None:
        self._group = shard_group(rt.topic)
        self._owner = {p: i for i, parts in enumerate(shard_assignment(rt)) for p in parts}
        self._handles: dict[int, Any] = {}
        self._lookup: asyncio.Future[dict[int, int]] | None = None

    def _handle(self, index: int) -> Any:
        import ray

        handle = self._handles.get(index)
        if handle is None:
            handle = ray.get_actor(self._group.name(index), namespace=NAMESPACE)
            self._handles[index] = handle
        return handle

    async def _look_up_owners(self) -> None:
        """Ask the live shard actors which partitions they serve; one lookup at a time."""
        if self._lookup is None or self._lookup.done():
            self._lookup = asyncio.ensure_future(self._group.owners())
        try:
            self._owner = await asyncio.shield(self._lookup)
        except Exception as exc:  # noqa: BLE001 - the next failed call looks again
            log.warning("looking up the owners of %s failed: %s", self._group.prefix, exc)
        self._handles.clear()

    async def _call(self, method: str, partition: int, *args: Any) -> Any:
        from eventray.platform.errors import PartitionMoved, ServiceUnavailable

        for attempt in (1, 2):
            index = self._owner.get(partition)
            if index is None:
                await self._look_up_owners()
                index = self._owner.get(partition)
                if index is None:
                    raise ServiceUnavailable(f"no shard actor serves partition {partition} right now "
                                             "(it is being moved); retry with the same command_id")
            try:
                return await getattr(self._handle(index), method).remote(partition, *args)
            except Exception as exc:
                moved = isinstance(getattr(exc, "cause", None), PartitionMoved)
                await self._look_up_owners()
                if not moved or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def submit(self, partition: int, payload: bytes) -> bytes:
        return await self._call("submit", partition, payload)

    async def read(self, partition: int, aggregate_id: str) -> Any:
        return await self._call("read", partition, aggregate_id)
