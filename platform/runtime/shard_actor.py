"""The Ray shell around :class:`ShardService`: one named, detached, restartable async actor.

It only decodes the wire format and delegates; the composition root builds the service.
"""

from __future__ import annotations

import logging
from typing import Any

import ray

from eventray.platform.errors import PartitionMoved
from eventray.platform.settings import Settings

log = logging.getLogger("eventray.shard")

NAMESPACE = "eventray"


def shard_name(topic: str, index: int) -> str:
    """The Ray actor name of shard ``index`` of ``topic``."""
    return f"shard:{topic}:{index}"


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)
class AggregateShard:
    """Single writer of its partitions. Call ``ready`` to wait for recovery."""

    def __init__(self, settings: Settings, partitions: list[int]) -> None:
        from eventray.platform import composition

        from eventray.platform.observability import logs, metrics

        logs.configure(json_lines=settings.log_json)
        self._wire = composition.wire_codec()
        self._service = composition.build_shard_service(settings, partitions)
        self._service.observer = metrics.ShardMetrics(settings.topic, trace=settings.trace_commands)
        self._settings = settings
        self._released = False

    def _serving(self, partition: int) -> None:
        """Refuse a partition this incarnation does not serve, so the router looks again."""
        if self._released or partition not in self._service.partitions:
            raise PartitionMoved(f"shard actor does not serve partition {partition}; "
                                 "the router looks up its owner again")
        if self._service.fenced is not None:
            raise PartitionMoved(f"shard actor was fenced on its partitions ({self._service.fenced}); "
                                 "a newer incarnation owns them")

    async def ready(self) -> dict[str, Any]:
        await self._service.start()
        return self._service.describe()

    async def submit(self, partition: int, payload: bytes) -> bytes:
        self._serving(partition)
        commands = self._wire.decode_commands(payload)
        outcomes = await self._service.submit(partition, commands)
        return self._wire.encode_outcomes(outcomes)

    async def read(self, partition: int, aggregate_id: str) -> tuple[bytes, int, str] | None:
        self._serving(partition)
        await self._service.start()
        found = self._service.read(partition, aggregate_id)
        if found is None:
            return None
        state, version = found
        return self._wire.encode_state(state), version, type(state).__name__

    async def describe(self) -> dict[str, Any]:
        return self._service.describe()

    async def flush_snapshots(self) -> None:
        await self._service.flush_snapshots()

    async def stop(self) -> None:
        await self._service.stop()

    def owned(self) -> dict[str, Any]:
        """The partitions this incarnation serves; answers during recovery too (routers ask)."""
        return {"partitions": sorted(self._service.partitions), "released": self._released,
                "fenced": self._service.fenced is not None}

    async def release(self) -> None:
        """Stop taking commands, then stop (snapshot, close the producers): before a reassignment.

        The next owner's ``init_transactions`` fences this incarnation anyway; releasing first
        keeps the hand-over short and clean.
        """
        self._released = True
        await self._service.stop()

    def pid(self) -> int:
        import os

        return os.getpid()
