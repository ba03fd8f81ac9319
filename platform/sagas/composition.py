"""The saga runtime's part of the composition root: coordinators, their clients and topics.

Every function takes the app's :class:`~eventray.platform.composition.Runtime` and a saga
name; the definition, its policy and its services come from the app's
:class:`~eventray.platform.app.Saga` declaration. Coordinators of one saga are a group of
the partitioned-actor runtime (:mod:`eventray.platform.runtime.actors`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from eventray.platform.errors import ConfigurationError
from eventray.platform.runtime.actors import NAMESPACE, ActorGroup, assignment, group_prefix
from eventray.platform.sagas.settings import SagaSettings

__all__ = [
    "build_coordinator", "coordinator_assignment", "coordinator_group", "ensure_saga_topic", "read_saga_log",
    "saga_client", "saga_topic", "start_coordinators", "stop_coordinators",
]


def saga_topic(rt: Any, saga_settings: SagaSettings) -> str:
    return rt.topic + saga_settings.topic_suffix


def transactional_id(rt: Any, saga_settings: SagaSettings, saga: str, index: int) -> str:
    """One transactional id per saga and saga-topic partition: a new coordinator incarnation fences
    the old one of its saga, never another saga's coordinator of the same partition (the sagas of
    an app share the saga topic)."""
    return f"eventray-saga:{saga_topic(rt, saga_settings)}:{saga}:{index}"


def group_id(rt: Any, saga: str, index: int) -> str:
    return f"eventray-saga:{rt.topic}:{saga}:{index}"


def ensure_saga_topic(rt: Any, saga_settings: SagaSettings) -> None:
    rt.ensure_topic(saga_topic(rt, saga_settings), saga_settings.partitions)


def coordinator_assignment(saga_settings: SagaSettings) -> list[list[int]]:
    """Saga-topic partitions per coordinator actor: partition p goes to coordinator p % coordinators."""
    return assignment(saga_settings.partitions, saga_settings.coordinators)


def coordinator_group(topic: str, saga: str) -> ActorGroup:
    """The coordinator actors of ``saga`` on event topic ``topic``."""
    return ActorGroup(group_prefix("saga", topic, saga), "saga coordinator")


def read_saga_log(rt: Any, saga_settings: SagaSettings, partition: int) -> Any:
    """Committed record values of saga-topic ``partition``, to the last stable offset."""
    reader = rt.reader(partition, topic=saga_topic(rt, saga_settings))
    try:
        for batch in reader.read(0):
            for _, _, value in batch:
                yield value
    finally:
        reader.close()


def build_coordinator(rt: Any, saga_settings: SagaSettings, saga: str, index: int, *, policy: Any = None,
                      services: Mapping[str, Callable[..., Any]] | None = None) -> Any:
    """The coordinator service of ``saga`` for saga-topic partition ``index`` (call in a running loop).

    ``policy`` and ``services`` replace what the app's factories build (tests pass fixed ones).
    """
    if not 0 <= index < saga_settings.partitions:
        raise ConfigurationError(f"saga partition {index} does not exist: the saga topic has "
                                 f"{saga_settings.partitions} (EVENTRAY_SAGA_PARTITIONS)")
    from eventray.platform.eventlog.writer import TransactionalWriter
    from eventray.platform.sagas.consumer import EventConsumer
    from eventray.platform.sagas.coordinator import CoordinatorConfig, SagaCoordinatorService

    spec = rt.app.saga(saga)
    if policy is None and spec.policy is not None:
        policy = spec.policy()
    definition = spec.build(policy)
    if services is None:
        services = spec.services(rt.settings, policy) if spec.services is not None else {}
    topic = saga_topic(rt, saga_settings)
    settings = rt.settings
    codec = rt.codec
    bus = rt.command_bus()
    return SagaCoordinatorService(
        index=index, coordinators=saga_settings.partitions, definition=definition,
        event_topic=rt.topic, saga_topic=topic,
        make_writer=lambda: TransactionalWriter(
            bootstrap=settings.kafka_address, topic=topic, partition=index,
            transactional_id=transactional_id(rt, saga_settings, saga, index),
            transaction_timeout_ms=settings.transaction_timeout_ms, commit_timeout_s=15.0,
            client_id=f"eventray-saga-{index}", tls=settings.tls_files()),
        make_consumer=lambda: EventConsumer(bootstrap=settings.kafka_address, topic=rt.topic,
                                            partitions=settings.partitions, group_id=group_id(rt, saga, index),
                                            tls=settings.tls_files()),
        read_saga_log=lambda: read_saga_log(rt, saga_settings, index),
        decode_events=lambda records, partition: codec.decode_many(records, partition=partition),
        send_command=bus.send,
        services=dict(services),
        config=CoordinatorConfig(poll_ms=saga_settings.poll_ms, idle_poll_ms=saga_settings.idle_poll_ms,
                                 offsets_every_s=saga_settings.offsets_every_s,
                                 max_batch=saga_settings.max_batch),
    )


def start_coordinators(rt: Any, saga_settings: SagaSettings, saga: str, *, policy: Any = None,
                       services: Mapping[str, Callable[..., Any]] | None = None, wait: bool = True,
                       changes: list[str] | None = None) -> list[Any]:
    """Bring the coordinator actors of ``saga`` to :func:`coordinator_assignment`; their handles.

    A coordinator whose partitions change, or that is beyond the new count, is released and
    removed first; then the missing ones start, each recovering its partitions from the saga
    topic (``init_transactions`` on a partition's transactional id fences any incarnation that
    might still write it). ``changes`` (when given) receives a line per change. ``policy`` and
    ``services`` (picklable) replace what the app's factories build, on every coordinator.
    """
    from eventray.platform.sagas.actor import SagaCoordinator

    rt.app.saga(saga)  # an unknown name fails here, naming the app's sagas
    rt.connect_ray()
    rt.ensure_topic()
    ensure_saga_topic(rt, saga_settings)
    options = rt.actor_options()

    def create(name: str, parts: list[int]) -> Any:
        return SagaCoordinator.options(  # type: ignore[attr-defined]  # added by @ray.remote
            name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, **options,
        ).remote(rt.settings, saga_settings, saga, parts, policy, services)

    return coordinator_group(rt.topic, saga).place(coordinator_assignment(saga_settings), create, changes=changes,
                                                   wait=wait)


def stop_coordinators(rt: Any, saga: str) -> int:
    """Release and remove every coordinator actor of ``saga`` on the app's topic, whatever their count."""
    rt.connect_ray()
    return coordinator_group(rt.topic, saga).remove_all()


def saga_client(rt: Any, saga_settings: SagaSettings, saga: str) -> Any:
    """A :class:`~eventray.platform.sagas.actor.SagaClient` of ``saga``."""
    from eventray.platform.sagas.actor import SagaClient

    rt.connect_ray()
    return SagaClient(rt, saga_settings, saga)
