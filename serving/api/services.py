"""What the resolvers delegate to, built once per replica from settings.

Built inside the replica's event loop (the ASGI lifespan): the command bus and the read
pool bind to the running loop.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from eventray.platform import composition
from eventray.platform.errors import EventrayError, ServiceUnavailable
from eventray.platform.runtime.bus import CommandBus
from eventray.platform.sagas.settings import SagaSettings
from eventray.platform.settings import Settings
from eventray.serving.api.live import EventHub
from eventray.serving.api.policy import Owners
from eventray.serving.metrics import Metrics
from eventray.serving.settings import ServingSettings

log = logging.getLogger("eventray.serving")


class ConsistentReads:
    """Read-your-writes reads through the bus, with a missing or dead shard as a retryable error."""

    def __init__(self, bus: CommandBus) -> None:
        self._bus = bus

    async def read(self, aggregate_id: str) -> tuple[Any, int] | None:
        try:
            return await self._bus.read(aggregate_id)
        except EventrayError:
            raise
        except Exception as e:  # a missing actor (ValueError) or a dead one (RayActorError)
            raise ServiceUnavailable(f"the shard of {aggregate_id!r} is unavailable ({type(e).__name__}); retry") from e


@dataclass
class ApiServices:
    """The replica's adapters: command bus, consistent reads, read-model pool, live hub, saga client."""

    settings: Settings
    serving: ServingSettings
    bus: CommandBus
    reads: ConsistentReads
    hub: EventHub
    owners: Owners
    metrics: Metrics
    pool: Any = None
    saga_client: Any = None
    _queries: ModuleType | None = field(default=None, repr=False)

    @classmethod
    async def start(cls, settings: Settings, serving: ServingSettings, *, metrics: Metrics | None = None,
                    sagas: SagaSettings | None = None) -> ApiServices:
        """Open the adapters. ``sagas``: how the saga coordinators run (their count picks the
        coordinator that owns a transfer); default: ``EVENTRAY_SAGA_*`` of this process."""
        from eventray.platform.sagas.composition import saga_client

        composition.connect_ray(settings)
        bus = composition.command_bus(settings)
        reads = ConsistentReads(bus)

        async def owner_lookup(account_id: str) -> str | None:
            found = await reads.read(account_id)
            return getattr(found[0], "owner_id", None) if found else None

        services = cls(
            settings=settings, serving=serving, bus=bus, reads=reads,
            hub=_build_hub(settings), owners=Owners(owner_lookup), metrics=metrics or Metrics(),
            saga_client=saga_client(settings, sagas or SagaSettings()),
        )
        await services._open_pool()
        return services

    async def _open_pool(self) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.pool = AsyncConnectionPool(self.settings.dsn, min_size=1, max_size=self.serving.read_pool_max,
                                        open=False, kwargs={"autocommit": True})
        await self.pool.open(wait=False)

    @property
    def queries(self) -> ModuleType:
        """``eventray.projections.queries`` (the read side), imported on first use."""
        if self._queries is None:
            try:
                self._queries = importlib.import_module("eventray.projections.queries")
            except ImportError as e:
                raise ServiceUnavailable("the read models are not available in this build") from e
        return self._queries

    async def close(self) -> None:
        self.hub.close()
        if self.pool is not None:
            await self.pool.close()


def _build_hub(settings: Settings) -> EventHub:
    from eventray.platform.eventlog.reader import PartitionReader

    codec = composition.event_codec()

    def make_reader(partition: int) -> PartitionReader:
        return PartitionReader(bootstrap=settings.kafka_address, topic=settings.topic, partition=partition,
                               poll_timeout_ms=200, client_id=f"eventray-live-{partition}")

    return EventHub(make_reader=make_reader, partitions=settings.partitions, decode=codec.decode)
