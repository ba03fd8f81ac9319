"""The saga runtime's part of the composition root: coordinators, their clients and topics."""

from __future__ import annotations

import functools
from typing import Any

from eventray.platform import composition
from eventray.platform.errors import ConfigurationError
from eventray.platform.sagas.settings import SagaSettings
from eventray.platform.settings import Settings

__all__ = [
    "build_coordinator", "build_scorer", "coordinator_assignment", "coordinator_names", "ensure_saga_topic", "read_saga_log", "saga_client", "saga_topic",
    "start_coordinators", "stop_coordinators", "transfer_policy",
]


def saga_topic(settings: Settings, saga_settings: SagaSettings) -> str:
    return settings.topic + saga_settings.topic_suffix


def transactional_id(settings: Settings, saga_settings: SagaSettings, index: int) -> str:
    """One transactional id per saga-topic partition: a new coordinator incarnation fences the old."""
    return f"eventray-saga:{saga_topic(settings, saga_settings)}:{index}"


def group_id(settings: Settings, saga_settings: SagaSettings, saga: str, index: int) -> str:
    return f"eventray-saga:{settings.topic}:{saga}:{index}"


def ensure_saga_topic(settings: Settings, saga_settings: SagaSettings) -> None:
    from eventray.platform.eventlog.admin import ensure_topic

    ensure_topic(settings.kafka_address, saga_topic(settings, saga_settings), saga_settings.partitions)


def coordinator_assignment(saga_settings: SagaSettings) -> list[list[int]]:
    """Saga-topic partitions per coordinator actor: partition p goes to coordinator p % coordinators."""
    n = max(1, min(saga_settings.coordinators, saga_settings.partitions))
    return [[p for p in range(saga_settings.partitions) if p % n == i] for i in range(n)]


def transfer_policy(saga_settings: SagaSettings) -> Any:
    from eventray.sagas.transfer_money import TransferPolicy

    s = saga_settings
    return TransferPolicy(fraud_threshold=s.fraud_threshold, step_timeout_ms=s.step_timeout_ms,
                          overall_timeout_ms=s.overall_timeout_ms, max_attempts=s.max_attempts,
                          compensation_max_attempts=s.compensation_max_attempts, backoff_base_ms=s.backoff_base_ms,
                          backoff_max_ms=s.backoff_max_ms)


def build_scorer(settings: Settings, saga_settings: SagaSettings) -> Any:
    """The fraud scorer ``saga_settings.scorer`` names."""
    from eventray.platform.sagas.scoring import AmountRuleScorer, AnomalyModelScorer

    if saga_settings.scorer == "rule":
        return AmountRuleScorer(limit=saga_settings.rule_limit)
    if saga_settings.scorer == "anomaly":
        from eventray.serving.models.client import MLClient

        return AnomalyModelScorer(client=MLClient.connect(settings, models=("anomaly",)))
    raise ConfigurationError(f"EVENTRAY_SAGA_SCORER must be 'anomaly' or 'rule', got {saga_settings.scorer!r}")


def read_saga_log(settings: Settings, saga_settings: SagaSettings, partition: int):
    """Committed record values of saga-topic ``partition``, to the last stable offset."""
    from eventray.platform.eventlog.reader import PartitionReader

    reader = PartitionReader(bootstrap=settings.kafka_address, topic=saga_topic(settings, saga_settings),
                             partition=partition)
    try:
        for batch in reader.read(0):
            for _, _, value in batch:
                yield value
    finally:
        reader.close()


def build_coordinator(settings: Settings, saga_settings: SagaSettings, saga: str, index: int, *,
                      scorer: Any = None) -> Any:
    """The coordinator service of ``saga`` for saga-topic partition ``index`` (call in a running loop)."""
    if not 0 <= index < saga_settings.partitions:
        raise ConfigurationError(f"saga partition {index} does not exist: the saga topic has "
                                 f"{saga_settings.partitions} (EVENTRAY_SAGA_PARTITIONS)")
    from eventray.platform.eventlog.writer import TransactionalWriter
    from eventray.platform.sagas.consumer import EventConsumer
    from eventray.platform.sagas.coordinator import CoordinatorConfig, SagaCoordinatorService
    from eventray.sagas import SAGAS

    if saga not in SAGAS:
        raise ConfigurationError(f"no saga named {saga!r}; known: {sorted(SAGAS)}")
    topic = saga_topic(settings, saga_settings)
    codec = composition.event_codec()
    bus = composition.command_bus(settings)
    fraud = scorer if scorer is not None else build_scorer(settings, saga_settings)
    definition = SAGAS[saga](transfer_policy(saga_settings))
    return SagaCoordinatorService(
        index=index, coordinators=saga_settings.partitions, definition=definition,
        event_topic=settings.topic, saga_topic=topic,
        make_writer=lambda: TransactionalWriter(
            bootstrap=settings.kafka_address, topic=topic, partition=index,
            transactional_id=transactional_id(settings, saga_settings, index),
            transaction_timeout_ms=settings.transaction_timeout_ms, commit_timeout_s=15.0,
            client_id=f"eventray-saga-{index}"),
        make_consumer=lambda: EventConsumer(bootstrap=settings.kafka_address, topic=settings.topic,
                                            partitions=settings.partitions,
                                            group_id=group_id(settings, saga_settings, saga, index)),
        read_saga_log=functools.partial(read_saga_log, settings, saga_settings, index),
        decode_events=lambda records, partition: codec.decode_many(records, partition=partition),
        send_command=bus.send,
        services={"fraud": fraud.score},
        config=CoordinatorConfig(poll_ms=saga_settings.poll_ms, offsets_every_s=saga_settings.offsets_every_s,
                                 max_batch=saga_settings.max_batch),
    )


def coordinator_names(settings: Settings, saga: str = "TransferMoney") -> dict[int, str]:
    """``{index: actor name}`` of the live coordinator actors of ``saga`` (any count)."""
    from eventray.platform.runtime.actors import indexed_actors

    return indexed_actors(f"saga:{settings.topic}:{saga}:")


def start_coordinators(settings: Settings, saga_settings: SagaSettings, *, saga: str = "TransferMoney",
                       scorer: Any = None, wait: bool = True, actor_options: dict[str, Any] | None = None,
                       changes: list[str] | None = None) -> list[Any]:
    """Bring the coordinator actors of ``saga`` to :func:`coordinator_assignment`; their handles.

    A coordinator whose partitions change, or that is beyond the new count, is stopped and
    removed first; then the missing ones start, each recovering its partitions from the saga
    topic (``init_transactions`` on a partition's transactional id fences any incarnation that
    might still write it). ``changes`` (when given) receives a line per change.
    """
    import ray

    from eventray.platform.runtime.actors import NAMESPACE, place
    from eventray.platform.sagas.actor import SagaCoordinator

    composition.connect_ray(settings)
    composition.ensure_event_topic(settings)
    ensure_saga_topic(settings, saga_settings)

    def create(name: str, parts: list[int]) -> Any:
        return SagaCoordinator.options(  # type: ignore[attr-defined]  # added by @ray.remote
            name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, **(actor_options or {}),
        ).remote(settings, saga_settings, saga, parts, scorer)

    handles = place(f"saga:{settings.topic}:{saga}:", coordinator_assignment(saga_settings), create,
                    what="saga coordinator", changes=changes)
    if wait:
        ray.get([h.ready.remote() for h in handles])
    return handles


def stop_coordinators(settings: Settings, saga_settings: SagaSettings, *, saga: str = "TransferMoney") -> None:
    """Stop and remove every coordinator actor of ``saga`` on ``settings.topic``, whatever their count."""
    from eventray.platform.runtime.actors import remove_all

    composition.connect_ray(settings)
    remove_all(f"saga:{settings.topic}:{saga}:")


def saga_client(settings: Settings, saga_settings: SagaSettings, *, saga: str = "TransferMoney") -> Any:
    from eventray.platform.sagas.actor import SagaClient

    composition.connect_ray(settings)
    return SagaClient(settings, partitions=saga_settings.partitions, coordinators=saga_settings.coordinators,
                      saga=saga)
