"""The coordinators' event-topic consumer: every partition, read_committed, group offsets.

A thin adapter over :class:`kafka.KafkaConsumer` with manual assignment (no group rebalancing:
a coordinator's partitions are fixed) and a consumer group used only to store offsets, which
the coordinator commits inside its transactions (``send_offsets_to_transaction``). Callers
never see ``kafka.errors``.
"""

from __future__ import annotations

import logging
from typing import Any

import kafka.errors as kerr
from kafka import KafkaConsumer, TopicPartition

from eventray.platform.errors import ServiceUnavailable
from eventray.platform.eventlog.reader import FETCH_MAX_WAIT_MS
from eventray.platform.tls import TLSFiles, kafka_options, kafka_unavailable

log = logging.getLogger("eventray.sagas")

_UNAVAILABLE = (kerr.KafkaConnectionError, kerr.KafkaTimeoutError, kerr.NodeNotReadyError,
                kerr.NoBrokersAvailableError if hasattr(kerr, "NoBrokersAvailableError") else kerr.KafkaConnectionError)


class EventConsumer:
    """Reads every partition of ``topic`` for the offsets group ``group_id``."""

    def __init__(self, *, bootstrap: str, topic: str, partitions: int, group_id: str,
                 client_id: str | None = None, tls: TLSFiles | None = None) -> None:
        self.topic = topic
        self.group_id = group_id
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=bootstrap, group_id=group_id, client_id=client_id or group_id,
                enable_auto_commit=False, isolation_level="read_committed", auto_offset_reset="earliest",
                # the broker answers a fetch as soon as there are records; this only bounds how
                # long it holds an empty one, so an idle coordinator does not refetch every few ms
                # (a poll still returns at its own timeout; the fetch's answer waits for the next)
                fetch_max_wait_ms=FETCH_MAX_WAIT_MS, max_poll_records=5_000, check_crcs=False,
                max_partition_fetch_bytes=4 * 1024 * 1024, **kafka_options(tls, "kafka-python"),
            )
        except _UNAVAILABLE as e:
            raise kafka_unavailable(f"Kafka is not reachable for the saga consumer {group_id}: {e}",
                                    bootstrap=bootstrap, tls=tls) from e
        self._consumer.assign(self._tps)

    def committed(self) -> dict[int, int | None]:
        """The group's committed offset per partition (``None``: never committed)."""
        try:
            return {tp.partition: self._consumer.committed(tp) for tp in self._tps}
        except _UNAVAILABLE as e:
            raise ServiceUnavailable(f"could not read the committed offsets of {self.group_id}: {e}") from e

    def end_offsets(self) -> dict[int, int]:
        try:
            ends = self._consumer.end_offsets(self._tps)
        except _UNAVAILABLE as e:
            raise ServiceUnavailable(f"could not read the end offsets of {self.topic}: {e}") from e
        return {tp.partition: int(o) for tp, o in ends.items()}

    def seek_all(self, offsets: dict[int, int]) -> None:
        for tp in self._tps:
            self._consumer.seek(tp, offsets[tp.partition])

    def poll(self, timeout_ms: int, max_records: int) -> dict[int, list[tuple[int, bytes | None, bytes]]]:
        """Committed records by partition: ``{partition: [(offset, key, value), ...]}``."""
        try:
            got = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except _UNAVAILABLE as e:
            raise ServiceUnavailable(f"polling {self.topic} failed: {e}") from e
        return {tp.partition: [(r.offset, r.key, r.value) for r in recs] for tp, recs in got.items()}

    def group_metadata(self) -> Any:
        return self._consumer.group_metadata()

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        except Exception as e:  # noqa: BLE001 - closing must not mask the caller's error
            log.warning("closing saga consumer %s: %s: %s", self.group_id, type(e).__name__, e)
