"""Topic administration and key routing for the event log.

The partition count of the event log is fixed when the topic is created: changing it would
move aggregates to other partitions (and so to other shards) and break per-aggregate order.
:func:`ensure_topic` therefore refuses, with a message that says what to do, to run against
a topic whose partition count differs from the settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache

import kafka.errors as kerr
from kafka import KafkaAdminClient
from kafka.partitioner.default import murmur2

from eventray.platform.errors import ConfigurationError, ServiceUnavailable
from eventray.platform.tls import TLSFiles, kafka_options, kafka_unavailable

__all__ = ["describe_partitions", "ensure_topic", "partition_for"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=65_536)
def _partition_for_bytes(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner puts a record with this key in.

    Exactly Java's ``Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions``, so the command
    router, the shard that owns the partition and the broker agree. ``str`` keys are UTF-8
    encoded, as the writer encodes aggregate ids.

    Raises:
        ValueError: ``partitions`` is not positive.
    """
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    return _partition_for_bytes(key.encode() if isinstance(key, str) else bytes(key), partitions)


def _admin(bootstrap: str, timeout_s: float, tls: TLSFiles | None) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="eventray-admin",
            request_timeout_ms=int(timeout_s * 1000),
            # the first connection too (a refused TLS handshake is retried until this ends)
            bootstrap_timeout_ms=int(timeout_s * 1000),
            **kafka_options(tls, "kafka-python"),
        )
    except (kerr.KafkaConnectionError, kerr.KafkaTimeoutError) as e:
        raise kafka_unavailable(f"Kafka at {bootstrap} is not reachable: {e}", bootstrap=bootstrap, tls=tls) from e


def describe_partitions(bootstrap: str, name: str, *, timeout_s: float = 30.0,
                        tls: TLSFiles | None = None) -> int | None:
    """The partition count of topic ``name``, or ``None`` when it does not exist."""
    admin = _admin(bootstrap, timeout_s, tls)
    try:
        return _partition_count(admin, name)
    finally:
        admin.close()


def _partition_count(admin: KafkaAdminClient, name: str) -> int | None:
    try:
        (meta,) = admin.describe_topics([name])
    except (kerr.KafkaConnectionError, kerr.KafkaTimeoutError) as e:
        raise ServiceUnavailable(f"could not describe topic {name!r}: {e}", topic=name) from e
    err = kerr.for_code(meta["error_code"])
    if err is kerr.UnknownTopicOrPartitionError:
        return None
    if err is not kerr.NoError:
        raise ServiceUnavailable(f"could not describe topic {name!r}: {err.__name__}", topic=name)
    return len(meta["partitions"])


def ensure_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    *,
    replication_factor: int | None = None,
    compacted: bool = False,
    retention_ms: int = -1,
    configs: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    tls: TLSFiles | None = None,
) -> bool:
    """Create topic ``name`` unless it exists; idempotent.

    The defaults suit the event log: delete policy (not compacted) with infinite retention
    (``retention.ms=-1``): the log is the source of truth and is never trimmed.

    Args:
        bootstrap: Kafka bootstrap address (``host:port[,host:port]``).
        name: the topic.
        partitions: the partition count it must have.
        replication_factor: ``None`` takes the broker's default.
        compacted: ``cleanup.policy=compact`` instead of ``delete``.
        retention_ms: ``retention.ms``; ``-1`` keeps records forever.
        configs: further topic configs, applied at creation only.
        timeout_s: how long to wait for the broker.
        tls: the client identity (``Settings.tls_files()``); None means plaintext.

    Returns:
        True when this call created the topic, False when it already existed.

    Raises:
        ConfigurationError: the topic exists with another partition count.
        ServiceUnavailable: Kafka could not be reached.
    """
    if partitions <= 0:
        raise ConfigurationError(f"topic {name!r}: partitions must be positive, got {partitions}")
    topic_configs = {
        "cleanup.policy": "compact" if compacted else "delete",
        "retention.ms": str(retention_ms),
        **dict(configs or {}),
    }
    admin = _admin(bootstrap, timeout_s, tls)
    try:
        existing = _partition_count(admin, name)
        created = False
        if existing is None:
            try:
                admin.create_topics(
                    {
                        name: {
                            "num_partitions": partitions,
                            "replication_factor": replication_factor or -1,
                            "configs": topic_configs,
                        }
                    },
                    timeout_ms=int(timeout_s * 1000),
                    wait_for_metadata=True,
                )
                created = True
                log.info("created topic %s with %d partitions", name, partitions)
            except kerr.TopicAlreadyExistsError:
                log.info("topic %s was created concurrently", name)  # lost a race: check it below
            except (kerr.KafkaConnectionError, kerr.KafkaTimeoutError) as e:
                raise ServiceUnavailable(f"could not create topic {name!r}: {e}", topic=name) from e
            except kerr.KafkaError as e:
                raise ConfigurationError(f"Kafka refused to create topic {name!r}: {e}", topic=name) from e
            existing = _partition_count(admin, name) if not created else partitions
        if existing != partitions:
            raise ConfigurationError(
                f"topic {name!r} exists with {existing} partitions but the settings ask for "
                f"{partitions}. A topic's partition count is fixed at creation: changing it would "
                f"move aggregates to other partitions. Set EVENTRAY_PARTITIONS={existing} to use "
                f"the existing topic, or use a new topic name (EVENTRAY_TOPIC) for {partitions} "
                "partitions and migrate the events by replaying them into it.",
                topic=name,
                existing=existing,
                requested=partitions,
            )
        return created
    finally:
        admin.close()
