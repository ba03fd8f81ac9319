"""The composition root: builds every adapter and service from :class:`Settings`.

Nothing else in eventray constructs a Kafka client, a database pool or a Ray actor; they
are built here and passed in through keyword-only constructors.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Union

import msgspec

from eventray.platform.domain import AggregateType, Command
from eventray.platform.errors import ConfigurationError
from eventray.platform.runtime.bus import CommandBus, ShardTransport
from eventray.platform.runtime.outcome import Outcome
from eventray.platform.runtime.shard import ShardConfig, ShardService
from eventray.platform.settings import Settings

log = logging.getLogger("eventray.composition")


@functools.cache
def aggregates() -> tuple[AggregateType[Any], ...]:
    from eventray.aggregates import AGGREGATES

    return AGGREGATES


@functools.cache
def event_codec():  # -> EventCodec
    from eventray.aggregates import ALL_EVENT_TYPES
    from eventray.platform.eventlog.codec import EventCodec

    return EventCodec(ALL_EVENT_TYPES)


class WireCodec:
    """msgpack encoding of command batches and outcome lists between the bus and shards."""

    def __init__(self, aggs: tuple[AggregateType[Any], ...]) -> None:
        commands: Any = Union[tuple(c for a in aggs for c in a.commands)]  # noqa: UP007
        events: Any = Union[tuple(e for a in aggs for e in a.events)]  # noqa: UP007
        typed_outcome: Any = msgspec.defstruct(
            "WireOutcome", [("events", tuple[events, ...], ())], bases=(Outcome,),
            frozen=True, kw_only=True,
        )
        self._states = {a.state_type.__name__: msgspec.msgpack.Decoder(a.state_type) for a in aggs}
        self._encoder = msgspec.msgpack.Encoder()
        self._commands: msgspec.msgpack.Decoder[list[Command]] = msgspec.msgpack.Decoder(list[commands])
        self._outcomes: msgspec.msgpack.Decoder[list[Outcome]] = msgspec.msgpack.Decoder(list[typed_outcome])

    def encode_commands(self, commands: list[Command]) -> bytes:
        return self._encoder.encode(commands)

    def decode_commands(self, payload: bytes) -> list[Command]:
        return self._commands.decode(payload)

    def encode_outcomes(self, outcomes: list[Outcome]) -> bytes:
        return self._encoder.encode(outcomes)

    def decode_outcomes(self, payload: bytes) -> list[Outcome]:
        return self._outcomes.decode(payload)

    def encode_state(self, state: Any) -> bytes:
        return self._encoder.encode(state)

    def decode_state(self, type_name: str, payload: bytes) -> Any:
        return self._states[type_name].decode(payload)


@functools.cache
def wire_codec() -> WireCodec:
    return WireCodec(aggregates())


def shard_config(settings: Settings) -> ShardConfig:
    return ShardConfig(
        batch_max=settings.shard_batch_max,
        queue_max=settings.shard_queue_max,
        snapshot_every_events=settings.snapshot_every_events,
        snapshot_interval_s=settings.snapshot_interval_s,
        dedupe_window=settings.dedupe_window,
    )


def assignment(settings: Settings) -> list[list[int]]:
    """Partitions per shard actor: partition p goes to shard p % shards."""
    shards = max(1, min(settings.shards, settings.partitions))
    return [[p for p in range(settings.partitions) if p % shards == i] for i in range(shards)]


def transactional_id(settings: Settings, partition: int) -> str:
    """One transactional id per partition, whichever actor owns it: fencing follows the partition."""
    return f"eventray:{settings.topic}:{partition}"


def build_snapshot_store(settings: Settings):  # -> SnapshotStore
    from eventray.platform.snapshots.store import SnapshotStore

    return SnapshotStore.open(dsn=settings.dsn)


def build_writer(settings: Settings, partition: int):  # -> TransactionalWriter
    from eventray.platform.eventlog.writer import TransactionalWriter

    return TransactionalWriter(
        bootstrap=settings.kafka_address,
        topic=settings.topic,
        partition=partition,
        transactional_id=transactional_id(settings, partition),
        transaction_timeout_ms=settings.transaction_timeout_ms,
    )


def read_decoded(settings: Settings, partition: int, from_offset: int):
    """Committed records of ``partition`` from ``from_offset`` to the last stable offset, decoded."""
    from eventray.platform.eventlog.reader import PartitionReader

    codec = event_codec()
    reader = PartitionReader(bootstrap=settings.kafka_address, topic=settings.topic, partition=partition)
    try:
        for batch in reader.read_events(codec, from_offset):
            yield from batch
    finally:
        reader.close()


def build_shard_service(settings: Settings, partitions: list[int]) -> ShardService:
    codec = event_codec()
    return ShardService(
        partitions=partitions,
        aggregates=aggregates(),
        make_writer=functools.partial(build_writer, settings),
        read_partition=functools.partial(read_decoded, settings),
        snapshots=build_snapshot_store(settings),
        encode=codec.encode,
        topic=settings.topic,
        config=shard_config(settings),
    )


def ensure_event_topic(settings: Settings) -> None:
    """Create the event topic, or refuse to go on when its partition count differs."""
    from eventray.platform.eventlog.admin import ensure_topic

    ensure_topic(settings.kafka_address, settings.topic, settings.partitions)


def connect_ray(settings: Settings) -> None:
    import ray

    if not ray.is_initialized():
        ray.init(address=settings.ray_address or "auto", namespace="eventray",
                 logging_level=logging.WARNING, log_to_driver=False)


def placement(settings: Settings) -> dict[str, Any]:
    """Ray actor options that place eventray's actors: spread over the nodes, or packed.

    ``settings.actor_resource`` names a custom resource that only the nodes meant for
    eventray's actors declare (e.g. the workers, keeping the head free); each actor asks for
    a sliver of it, so Ray places and restarts them only there.
    """
    options: dict[str, Any] = {"scheduling_strategy": "SPREAD" if settings.placement == "spread" else "DEFAULT"}
    if settings.actor_resource:
        options["resources"] = {settings.actor_resource: 0.001}
    return options


def start_shards(settings: Settings, *, wait: bool = True) -> list[Any]:
    """Create (or find) the named shard actors and wait until they have recovered."""
    import ray

    from eventray.platform.runtime.shard_actor import NAMESPACE, AggregateShard, shard_name

    connect_ray(settings)
    ensure_event_topic(settings)
    handles = []
    for index, parts in enumerate(assignment(settings)):
        handles.append(
            AggregateShard.options(  # type: ignore[attr-defined]  # added by @ray.remote
                name=shard_name(settings.topic, index), namespace=NAMESPACE,
                lifetime="detached", get_if_exists=True, **placement(settings),
            ).remote(settings, parts)
        )
    if wait:
        ray.get([h.ready.remote() for h in handles])
    return handles


def stop_shards(settings: Settings) -> None:
    """Stop and remove the shard actors of ``settings.topic`` (flushes their snapshots)."""
    import ray

    from eventray.platform.runtime.shard_actor import NAMESPACE, shard_name

    connect_ray(settings)
    for index in range(settings.partitions):
        try:
            handle = ray.get_actor(shard_name(settings.topic, index), namespace=NAMESPACE)
        except ValueError:
            continue
        try:
            ray.get(handle.stop.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - killing it below is the fallback
            pass
        ray.kill(handle, no_restart=True)


def rescale_shards(settings: Settings, *, timeout_s: float = 60.0) -> list[str]:
    """Bring the shard actors of ``settings.topic`` to ``assignment(settings)``; what changed.

    Actors whose partitions stay the same are left alone. Each one whose partitions change
    (or that is beyond the new count) is released first: it stops taking commands (callers
    get :class:`PartitionMoved` and resend), finishes its batch, snapshots and closes its
    producers; then it is removed. Only then do the new actors start, and each one's
    ``init_transactions`` fences whatever may still hold its partitions' transactional ids.
    So a partition has at most one writer at any time, and routers learn the new owners
    from the actors themselves.
    """
    import time

    import ray

    from eventray.platform.runtime.shard_actor import NAMESPACE

    connect_ray(settings)
    ensure_event_topic(settings)
    desired = assignment(settings)
    changes: list[str] = []
    removed: set[str] = set()
    live = shard_actor_names(settings)
    for index, name in sorted(live.items()):
        handle = ray.get_actor(name, namespace=NAMESPACE)
        owned: list[int] | None
        try:
            info: Any = ray.get(handle.owned.remote(), timeout=timeout_s)
            owned = info["partitions"]
        except Exception as exc:  # noqa: BLE001 - unreachable: replace it
            log.warning("shard %s did not answer (%s); replacing it", name, exc)
            owned = None
        if index < len(desired) and owned == desired[index]:
            continue
        try:
            ray.get(handle.release.remote(), timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - fencing by the next owner covers it
            log.warning("shard %s did not release cleanly: %s", name, exc)
        ray.kill(handle, no_restart=True)
        removed.add(name)
        changes.append(f"removed {name} (partitions {owned})")
    deadline = time.monotonic() + timeout_s
    while removed & set(shard_actor_names(settings).values()):  # a killed actor frees its name a bit later
        if time.monotonic() > deadline:
            raise ConfigurationError(f"removed shard actors of {settings.topic} still hold their names")
        time.sleep(0.1)
    kept = set(shard_actor_names(settings))
    start_shards(settings)
    for index, parts in enumerate(desired):
        if index not in kept:
            changes.append(f"started shard:{settings.topic}:{index} (partitions {parts})")
    return changes


class RayShardTransport(ShardTransport):
    """Reaches shard actors by name and learns which one owns each partition.

    It starts from the assignment in ``settings`` and looks the owners up again (each live
    ``shard:{topic}:*`` actor says which partitions it serves) whenever a call fails: after a
    reassignment an actor answers :class:`PartitionMoved` (nothing applied) and the call is
    resent once to the new owner; after an actor died the call fails retryably, as it may
    have been applied, and the client resends it with the same ``command_id``.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._owner = {p: i for i, parts in enumerate(assignment(settings)) for p in parts}
        self._handles: dict[int, Any] = {}
        self._lookup: asyncio.Future[dict[int, int]] | None = None

    def _handle(self, index: int) -> Any:
        import ray

        from eventray.platform.runtime.shard_actor import NAMESPACE, shard_name

        handle = self._handles.get(index)
        if handle is None:
            handle = ray.get_actor(shard_name(self._settings.topic, index), namespace=NAMESPACE)
            self._handles[index] = handle
        return handle

    async def _look_up_owners(self) -> None:
        """Ask the live shard actors which partitions they serve; one lookup at a time."""
        if self._lookup is None or self._lookup.done():
            self._lookup = asyncio.ensure_future(shard_owners(self._settings))
        try:
            self._owner = await asyncio.shield(self._lookup)
        except Exception as exc:  # noqa: BLE001 - the next failed call looks again
            log.warning("looking up the shard owners of %s failed: %s", self._settings.topic, exc)
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


def shard_actor_names(settings: Settings) -> dict[int, str]:
    """The live shard actors of ``settings.topic`` by index (whatever their count)."""
    from ray.util import list_named_actors

    from eventray.platform.runtime.shard_actor import NAMESPACE

    prefix = f"shard:{settings.topic}:"
    found = {}
    for entry in list_named_actors(all_namespaces=True):
        name = entry.get("name", "")
        if entry.get("namespace") == NAMESPACE and name.startswith(prefix) and name[len(prefix):].isdigit():
            found[int(name[len(prefix):])] = name
    return found


async def shard_owners(settings: Settings, *, timeout_s: float = 5.0) -> dict[int, int]:
    """Partition -> index of the live shard actor that serves it (released and fenced ones skipped)."""
    import ray

    from eventray.platform.runtime.shard_actor import NAMESPACE

    def handles() -> dict[int, Any]:
        out = {}
        for index, name in shard_actor_names(settings).items():
            try:
                out[index] = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:  # gone between the listing and now
                continue
        return out

    found = await asyncio.to_thread(handles)

    async def ask(index: int, handle: Any) -> tuple[int, dict[str, Any] | None]:
        try:
            return index, await asyncio.wait_for(handle.owned.remote(), timeout_s)
        except Exception:  # noqa: BLE001 - starting or dead: it serves nothing now
            return index, None

    owners: dict[int, int] = {}
    for index, info in await asyncio.gather(*(ask(i, h) for i, h in found.items())):
        if info and not info["released"] and not info["fenced"]:
            for p in info["partitions"]:
                owners[p] = index
    return owners


def command_bus(settings: Settings, *, transport: ShardTransport | None = None) -> CommandBus:
    """A bus that reaches the shard actors of ``settings``; call inside a running loop."""
    from eventray.platform.eventlog.admin import partition_for

    wire = wire_codec()
    if settings.partitions < 1:
        raise ConfigurationError("EVENTRAY_PARTITIONS must be at least 1")
    return CommandBus(
        partitions=settings.partitions,
        partition_for=partition_for,
        transport=transport or RayShardTransport(settings),
        encode_commands=wire.encode_commands,
        decode_outcomes=wire.decode_outcomes,
        decode_state=wire.decode_state,
        batch_max=settings.shard_batch_max,
        waiting_max=settings.bus_waiting_max,
        max_in_flight=settings.bus_max_in_flight,
        call_timeout_s=settings.bus_call_timeout_s,
    )


def run(coro):  # small helper for sync callers (CLI)
    return asyncio.run(coro)

