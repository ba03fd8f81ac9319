"""Dead letters: log records no reader could decode, kept for a human to look at.

A reader never crashes on a bad record: the codec returns an
:class:`~.envelope.Undecodable`, and the runner sends it here and moves on. The dead letter
keeps the original value byte for byte; where it came from and why it failed travel in
headers, so a fix (a missing upcaster, a newer reader) can replay it into the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import kafka.errors as kerr
from kafka import KafkaProducer

from eventray.platform.errors import ServiceUnavailable
from eventray.platform.eventlog.envelope import Undecodable
from eventray.platform.tls import TLSFiles, kafka_options, kafka_unavailable

__all__ = ["DeadLetterPublisher", "dead_letter_record"]

log = logging.getLogger(__name__)

#: ``(key, value, headers)`` as :meth:`kafka.KafkaProducer.send` takes them
DeadLetter = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


def dead_letter_record(item: Undecodable, *, source_topic: str) -> DeadLetter:
    """The dead-letter record for ``item``: same key and value, provenance in headers.

    Headers: ``eventray.reason``, ``eventray.source.topic``, and when known
    ``eventray.source.partition``, ``eventray.source.offset``, ``eventray.event_type``,
    ``eventray.schema_version`` (all UTF-8 text).
    """
    headers = [("eventray.reason", item.reason.encode()), ("eventray.source.topic", source_topic.encode())]
    for name, value in (
        ("eventray.source.partition", item.partition),
        ("eventray.source.offset", item.offset),
        ("eventray.event_type", item.event_type),
        ("eventray.schema_version", item.schema_version),
    ):
        if value is not None:
            headers.append((name, str(value).encode()))
    return item.key, item.raw, headers


class DeadLetterPublisher:
    """Writes :class:`Undecodable` records to the dead-letter topic (``settings.dead_letter_topic``).

    An idempotent (not transactional) producer: a dead letter written twice after a runner
    restart is harmless, and the runner's own offsets decide what it reads next.

    Args:
        bootstrap: Kafka bootstrap address.
        topic: the dead-letter topic; create it with :func:`~.admin.ensure_topic`.
        timeout_s: how long :meth:`publish` waits for the broker.
        tls: the client identity (``Settings.tls_files()``); None means plaintext.
    """

    def __init__(self, bootstrap: str, topic: str, *, timeout_s: float = 30.0, tls: TLSFiles | None = None) -> None:
        self.topic = topic
        self._timeout_s = timeout_s
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap, client_id="eventray-dead-letters", enable_idempotence=True, acks="all",
                **kafka_options(tls, "kafka-python"),
            )
        except (kerr.KafkaConnectionError, kerr.KafkaTimeoutError) as e:
            raise kafka_unavailable(f"Kafka is not reachable for dead letters: {e}", bootstrap=bootstrap, tls=tls) from e

    def publish(self, items: Iterable[Undecodable], *, source_topic: str) -> int:
        """Write ``items`` and wait until the broker has them all.

        Returns:
            How many dead letters were written.

        Raises:
            ServiceUnavailable: the broker did not take them in time (retryable).
        """
        futures = []
        try:
            for item in items:
                key, value, headers = dead_letter_record(item, source_topic=source_topic)
                log.warning(
                    "dead letter from %s[%s]@%s: %s", source_topic, item.partition, item.offset, item.reason
                )
                futures.append(self._producer.send(self.topic, value=value, key=key, headers=headers))
            self._producer.flush(timeout=self._timeout_s)
            for f in futures:
                f.get(timeout=self._timeout_s)
        except kerr.KafkaError as e:
            raise ServiceUnavailable(f"could not write dead letters to {self.topic}: {e}") from e
        return len(futures)

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush and close the producer."""
        self._producer.close(timeout=timeout_s)
