"""The Ray shell around :class:`ShardService`: one named, detached, restartable async actor.

It only decodes the wire format and delegates; the app's runtime builds the service. The
actor receives the settings (which name the app by import path) and imports the app itself.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import ray

from eventray.platform.errors import PartitionMoved
from eventray.platform.runtime.outcome import Outcome
from eventray.platform.runtime.actors import ACTOR_DEFAULTS
from eventray.platform.settings import Settings

log = logging.getLogger("eventray.shard")


@ray.remote(**ACTOR_DEFAULTS)
class AggregateShard:
    """Single writer of its partitions. Call ``ready`` to wait for recovery."""

    def __init__(self, settings: Settings, partitions: list[int]) -> None:
        from eventray.platform.composition import Runtime
        from eventray.platform.observability import logs, metrics

        logs.configure(json_lines=settings.log_json)
        rt = Runtime.load(settings)
        self._wire = rt.wire
        self._service = rt.build_shard_service(partitions)
        observer = metrics.ShardMetrics(rt.topic, trace=settings.trace_commands)
        self._service.observer = observer
        self._exporter = metrics.Exporter()
        self._exporter.add(observer.export)
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
        try:
            commands = self._wire.decode_commands(payload)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return self._wire.encode_outcomes(await self._submit_each(partition, payload))
        outcomes = await self._service.submit(partition, commands)
        return self._wire.encode_outcomes(outcomes)

    async def _submit_each(self, partition: int, payload: bytes) -> list[Any]:
        """A batch holding a command its type's constraints refuse: that one gets its error, the rest go on."""
        items = self._wire.decode_each(payload)
        commands = [c for c in items if not isinstance(c, Outcome)]
        outcomes = iter(await self._service.submit(partition, commands) if commands else [])
        return [item if isinstance(item, Outcome) else next(outcomes) for item in items]

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
        return {"partitions": sorted(self._service.partitions),
                "serving": not self._released and self._service.fenced is None}

    async def release(self) -> None:
        """Stop taking commands, then stop (snapshot, close the producers): before a reassignment.

        The next owner's ``init_transactions`` fences this incarnation anyway; releasing first
        keeps the hand-over short and clean.
        """
        self._released = True
        await self._service.stop()
        self._exporter.close()

    def pid(self) -> int:
        import os

        return os.getpid()
