"""The composition root: a :class:`Runtime` builds every adapter of one app from its settings.

Nothing else in eventray constructs a Kafka client, a database pool or a Ray actor; they
are built here (or by the actor groups in :mod:`eventray.platform.runtime.shards`,
:mod:`eventray.platform.projections.actor` and :mod:`eventray.platform.sagas.composition`,
from a runtime) and passed in through keyword-only constructors. A runtime holds no global
state, so two apps live side by side in one process.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from typing import Any, Union

import msgspec

from eventray.platform.app import App, app_package_dir, load_app
from eventray.platform.domain import AggregateType, Command
from eventray.platform.errors import AppInvalid, ConfigurationError
from eventray.platform.runtime.outcome import Outcome
from eventray.platform.settings import Settings

log = logging.getLogger("eventray.composition")

__all__ = ["Runtime", "WireCodec", "connect_ray"]


class WireCodec:
    """msgpack encoding of command batches and outcome lists between the bus and shards."""

    def __init__(self, aggs: tuple[AggregateType[Any], ...]) -> None:
        commands: Any = Union[tuple(c for a in aggs for c in a.commands)]  # noqa: UP007
        events: Any = Union[tuple(e for a in aggs for e in a.events)]  # noqa: UP007
        typed_outcome: Any = msgspec.defstruct(
            "WireOutcome", [("events", tuple[events, ...], ())], bases=(Outcome,),
            frozen=True, kw_only=True,
        )
        self.command_types = frozenset(c for a in aggs for c in a.commands)
        self._states = {a.state_type.__name__: msgspec.msgpack.Decoder(a.state_type) for a in aggs}
        self._encoder = msgspec.msgpack.Encoder()
        self._commands: msgspec.msgpack.Decoder[list[Command]] = msgspec.msgpack.Decoder(list[commands])
        self._command: msgspec.msgpack.Decoder[Command] = msgspec.msgpack.Decoder(commands)
        self._raw_items = msgspec.msgpack.Decoder(list[msgspec.Raw])
        self._loose = msgspec.msgpack.Decoder(dict[str, Any])
        self._outcomes: msgspec.msgpack.Decoder[list[Outcome]] = msgspec.msgpack.Decoder(list[typed_outcome])

    def encode_commands(self, commands: list[Command]) -> bytes:
        return self._encoder.encode(commands)

    def decode_commands(self, payload: bytes) -> list[Command]:
        return self._commands.decode(payload)

    def decode_each(self, payload: bytes) -> list[Command | Outcome]:
        """A batch one command at a time: a command whose fields break its type's constraints
        becomes its ``InvalidCommand`` outcome, and the rest of the batch stands."""
        from eventray.platform.errors import InvalidCommand

        out: list[Command | Outcome] = []
        for raw in self._raw_items.decode(payload):
            try:
                out.append(self._command.decode(raw))
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                try:
                    loose = self._loose.decode(raw)
                except (msgspec.ValidationError, msgspec.DecodeError):
                    loose = {}
                found = re.search(r"at `\$\.(\w+)", str(e))
                out.append(Outcome.failure(str(loose.get("command_id", "")), str(loose.get("aggregate_id", "")),
                                           InvalidCommand(f"the command does not fit its type: {e}",
                                                          field=found.group(1) if found else None)))
        return out

    def encode_outcomes(self, outcomes: list[Outcome]) -> bytes:
        return self._encoder.encode(outcomes)

    def decode_outcomes(self, payload: bytes) -> list[Outcome]:
        return self._outcomes.decode(payload)

    def encode_state(self, state: Any) -> bytes:
        return self._encoder.encode(state)

    def decode_state(self, type_name: str, payload: bytes) -> Any:
        return self._states[type_name].decode(payload)


class Runtime:
    """One app with its settings: the codecs, the adapters and the actor options it runs with.

    ``settings`` are resolved against the app: the event topic is ``settings.topic`` when it
    is set, else the app's; ``settings.app`` is the app's import path, which is what actors
    and replicas receive (they build their own runtime with :meth:`load`).
    """

    def __init__(self, app: App, settings: Settings) -> None:
        if not isinstance(app, App):
            raise AppInvalid(f"Runtime needs an eventray.App, got {type(app).__name__}")
        self.app = app
        # an App built in-process has no import path: it runs here, but actors cannot import it
        self.settings = settings.model_copy(update={"topic": settings.topic or app.topic, "app": app.import_path or ""})

    @classmethod
    def load(cls, settings: Settings | None = None, *, app: str | None = None) -> Runtime:
        """The runtime of the app at ``app`` (default ``settings.app``, i.e. ``EVENTRAY_APP``)."""
        settings = settings or Settings()
        return cls(load_app(app or settings.app), settings)

    def with_settings(self, **update: Any) -> Runtime:
        """The same app with some settings changed."""
        return Runtime(self.app, self.settings.model_copy(update=update))

    @property
    def topic(self) -> str:
        assert self.settings.topic is not None
        return self.settings.topic

    # --- codecs ------------------------------------------------------------------------------

    @property
    def aggregates(self) -> tuple[AggregateType[Any], ...]:
        return self.app.aggregates

    @functools.cached_property
    def codec(self) -> Any:  # -> EventCodec
        from eventray.platform.eventlog.codec import EventCodec

        return EventCodec(self.app.event_types, upcasters=self.app.upcasters)

    @functools.cached_property
    def wire(self) -> WireCodec:
        return WireCodec(self.app.aggregates)

    def projection(self, name: str, *, build: bool = False) -> Any:
        """The projection ``name``; with ``build``, constructed for running (``Projection.build``)."""
        cls = self.app.projection(name)
        return cls.build(self.settings) if build else cls()

    # --- adapters ----------------------------------------------------------------------------

    def shard_config(self) -> Any:
        from eventray.platform.runtime.shard import ShardConfig

        s = self.settings
        return ShardConfig(batch_max=s.shard_batch_max, queue_max=s.shard_queue_max,
                           snapshot_every_events=s.snapshot_every_events, snapshot_interval_s=s.snapshot_interval_s,
                           dedupe_window=s.dedupe_window)

    def transactional_id(self, partition: int) -> str:
        """One transactional id per partition, whichever actor owns it: fencing follows the partition."""
        return f"eventray:{self.topic}:{partition}"

    def build_writer(self, partition: int) -> Any:  # -> TransactionalWriter or RdKafkaTransactionalWriter
        from eventray.platform.eventlog.writer import make_writer

        return make_writer(self.settings.kafka_client, bootstrap=self.settings.kafka_address, topic=self.topic,
                           partition=partition, transactional_id=self.transactional_id(partition),
                           transaction_timeout_ms=self.settings.transaction_timeout_ms,
                           commit_timeout_s=self.settings.commit_timeout_s, tls=self.settings.tls_files())

    def reader(self, partition: int, *, topic: str | None = None, **options: Any) -> Any:  # -> PartitionReader
        """A read_committed reader of one partition of the event topic (or ``topic``)."""
        from eventray.platform.eventlog.reader import make_reader

        return make_reader(self.settings.kafka_client, bootstrap=self.settings.kafka_address, topic=topic or self.topic,
                           partition=partition, tls=self.settings.tls_files(), **options)

    def read_decoded(self, partition: int, from_offset: int) -> Iterator[Any]:
        """Committed records of ``partition`` from ``from_offset`` to the last stable offset, decoded."""
        reader = self.reader(partition)
        try:
            for batch in reader.read_events(self.codec, from_offset):
                yield from batch
        finally:
            reader.close()

    def build_shard_service(self, partitions: list[int]) -> Any:  # -> ShardService
        from eventray.platform.runtime.shard import ShardService
        from eventray.platform.snapshots.store import SnapshotStore

        return ShardService(partitions=partitions, aggregates=self.aggregates, make_writer=self.build_writer,
                            read_partition=self.read_decoded, snapshots=SnapshotStore.open(dsn=self.settings.dsn),
                            encode=self.codec.encode, topic=self.topic, config=self.shard_config())

    def ensure_topic(self, topic: str | None = None, partitions: int | None = None) -> None:
        """Create the event topic (or ``topic``), or refuse to go on when its partition count differs."""
        from eventray.platform.eventlog.admin import ensure_topic

        ensure_topic(self.settings.kafka_address, topic or self.topic, partitions or self.settings.partitions,
                     tls=self.settings.tls_files())

    def command_bus(self, *, transport: Any = None) -> Any:  # -> CommandBus
        """A bus that reaches the shard actors of this app; call inside a running loop."""
        from eventray.platform.eventlog.admin import partition_for
        from eventray.platform.runtime.bus import CommandBus
        from eventray.platform.runtime.shards import RayShardTransport

        s = self.settings
        if s.partitions < 1:
            raise ConfigurationError("EVENTRAY_PARTITIONS must be at least 1")
        wire = self.wire
        return CommandBus(partitions=s.partitions, partition_for=partition_for,
                          transport=transport or RayShardTransport(self), encode_commands=wire.encode_commands,
                          decode_outcomes=wire.decode_outcomes, decode_state=wire.decode_state,
                          known_commands=wire.command_types, batch_max=s.shard_batch_max,
                          waiting_max=s.bus_waiting_max, max_in_flight=s.bus_max_in_flight,
                          call_timeout_s=s.bus_call_timeout_s)

    # --- Ray ---------------------------------------------------------------------------------

    def job_env(self) -> dict[str, Any]:
        """The Ray runtime env that carries the app's package to the workers (empty for eventray's own)."""
        folder = app_package_dir(self.app)
        return {"py_modules": [str(folder)]} if folder is not None else {}

    def connect_ray(self) -> None:
        """Join the Ray cluster of the settings as a driver whose workers can import the app."""
        connect_ray(self.settings, runtime_env=self.job_env())

    def actor_options(self) -> dict[str, Any]:
        """Placement (:func:`~eventray.platform.runtime.actors.placement`), plus the app's package
        for an app that lives outside eventray when the driver's job does not carry it already."""
        from eventray.platform.runtime.actors import placement

        if not self.settings.app:
            raise AppInvalid(f"App {self.app.name!r} was not loaded by import path, and actors import the app on "
                             "their worker: load it with load_app('package.module:attr') (or --app, EVENTRAY_APP)")
        options = placement(self.settings)
        env = self.job_env()
        if env:
            import tempfile

            import ray
            # Ray uploads a local folder for a job's runtime env only; an actor's must name the
            # uploaded package's URI, which this computes from the folder's content (and uploads)
            from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

            uris = upload_py_modules_if_needed(dict(env), include_gitignore=True,
                                               scratch_dir=tempfile.gettempdir())["py_modules"]
            job = dict(ray.get_runtime_context().runtime_env or {})
            have = list(job.get("py_modules") or [])
            missing = [u for u in uris if u not in have]
            if missing:
                options["runtime_env"] = {**job, "py_modules": have + missing}
        return options


def connect_ray(settings: Settings, *, runtime_env: dict[str, Any] | None = None) -> None:
    """Join the Ray cluster at ``settings.ray_address`` (the dev head by default), once per process."""
    import ray

    if not ray.is_initialized():
        ray.init(address=settings.ray_address or "auto", namespace="eventray", logging_level=logging.WARNING,
                 log_to_driver=False, runtime_env=runtime_env or None)
