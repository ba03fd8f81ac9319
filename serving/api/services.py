"""What the resolvers delegate to, built once per replica from the app's runtime.

Built inside the replica's event loop (the ASGI lifespan): the command bus, the saga clients
and the read pool bind to the running loop. The app's own per-replica state (caches, its
read API) comes from its ``GraphQLExtension.setup`` and is ``context["app"]`` in resolvers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from eventray.platform.errors import EventrayError, ServiceUnavailable
from eventray.platform.runtime.bus import CommandBus
from eventray.platform.sagas.settings import SagaSettings
from eventray.platform.settings import Settings
from eventray.serving.api.live import EventHub
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
    """The replica's adapters: command bus, consistent reads, read-model pool, live hub, saga clients."""

    runtime: Any  # eventray.platform.composition.Runtime
    serving: ServingSettings
    bus: CommandBus
    reads: ConsistentReads
    hub: EventHub
    metrics: Metrics
    pool: Any = None
    sagas: dict[str, Any] = field(default_factory=dict)
    #: what the app's ``GraphQLExtension.setup`` returned
    app_state: Any = None

    @property
    def settings(self) -> Settings:
        return self.runtime.settings  # type: ignore[no-any-return]

    @classmethod
    async def start(cls, rt: Any, serving: ServingSettings, *, metrics: Metrics | None = None,
                    sagas: SagaSettings | None = None, setup: Any = None) -> ApiServices:
        """Open the adapters of the app of ``rt``. ``sagas``: how its saga coordinators run (their
        count picks the coordinator that owns a saga); default: ``EVENTRAY_SAGA_*`` of this process.
        ``setup``: the app's ``GraphQLExtension.setup``."""
        from eventray.platform.sagas.composition import saga_client

        rt.connect_ray()
        bus = rt.command_bus()
        saga_settings = sagas or SagaSettings()
        services = cls(
            runtime=rt, serving=serving, bus=bus, reads=ConsistentReads(bus), hub=_build_hub(rt),
            metrics=metrics or Metrics(), sagas={name: saga_client(rt, saga_settings, name) for name in rt.app.sagas},
        )
        await services._open_pool()
        if setup is not None:
            services.app_state = setup(services)
        return services

    def saga(self, name: str) -> Any:
        """The client of the app's saga ``name``."""
        client = self.sagas.get(name)
        if client is None:
            raise ServiceUnavailable(f"this app runs no saga named {name!r}; known: {sorted(self.sagas) or 'none'}")
        return client

    async def _open_pool(self) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.pool = AsyncConnectionPool(self.settings.dsn, min_size=1, max_size=self.serving.read_pool_max,
                                        open=False, kwargs={"autocommit": True})
        await self.pool.open(wait=False)

    async def close(self) -> None:
        self.hub.close()
        if self.pool is not None:
            await self.pool.close()


def _build_hub(rt: Any) -> EventHub:
    def make_reader(partition: int) -> Any:
        return rt.reader(partition, poll_timeout_ms=200, client_id=f"eventray-live-{partition}")

    return EventHub(make_reader=make_reader, partitions=rt.settings.partitions, decode=rt.codec.decode)
