"""Reading one event-log partition: bounded replay to the last stable offset, and live tail.

No consumer group: the partition is assigned manually and the caller keeps its own position
(a snapshot checkpoint, a projection's offsets table), so restarts resume exactly where the
caller's own state says. Reads are ``read_committed``: records of aborted transactions and
transaction markers are never returned, and a read stops at the last stable offset (LSO), the
first offset of a still-open transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kafka.errors as kerr
from kafka import KafkaConsumer, TopicPartition

from eventray.platform.errors import ServiceUnavailable
from eventray.platform.eventlog.codec import EventCodec
from eventray.platform.eventlog.envelope import DecodedRecord, Undecodable
from eventray.platform.tls import TLSFiles, kafka_options, kafka_unavailable

__all__ = ["LogRecord", "PartitionReader", "PartitionsReader", "make_partitions_reader", "make_reader"]

log = logging.getLogger(__name__)

#: one committed record: ``(offset, key, value)``
LogRecord = tuple[int, bytes | None, bytes]

try:  # kafka-python uses this C extension for CRC-32C when it is installed
    import crc32c as _crc32c  # noqa: F401

    _HAVE_C_CRC32C = True
except ImportError:
    _HAVE_C_CRC32C = False

_UNAVAILABLE = (kerr.KafkaConnectionError, kerr.KafkaTimeoutError, kerr.NodeNotReadyError)

#: how long the broker holds an empty fetch (records end it at once, so this adds no latency to
#: a record): an idle consumer fetches every 2 s, not twice a second. Every idle fetch costs a
#: round trip over TLS on both sides (benchmarks/idle.py: the broker and every tailing actor).
#: The price: a request on the same connection (``end_offsets``) waits behind a held fetch,
#: so what asks for ends often does it on a consumer of its own (the projection host's
#: ``_ends_reader``).
FETCH_MAX_WAIT_MS = 2000


def stop_check(stop: threading.Event | Callable[[], bool] | None) -> Callable[[], bool]:
    """``stop`` (an event, a callable or nothing) as a callable that says whether to stop."""
    if stop is None:
        return lambda: False
    if isinstance(stop, threading.Event):
        return stop.is_set
    return stop


class ReaderCommon:
    """What both Kafka clients' one-partition readers share: the bounded read, the tail, decoding.

    A subclass sets ``topic``, ``partition`` and ``_stall_timeout_s``, and defines
    ``last_stable_offset``, ``close``, ``_seek(offset)`` and ``_fetch()``: one poll, returning the
    records it got (maybe none) and the position after it.
    """

    topic: str
    partition: int
    _stall_timeout_s: float

    def last_stable_offset(self, timeout_s: float = 30.0) -> int:
        raise NotImplementedError  # pragma: no cover - each client defines it

    def close(self) -> None:
        raise NotImplementedError  # pragma: no cover - each client defines it

    def _seek(self, offset: int) -> None:
        raise NotImplementedError  # pragma: no cover - each client defines it

    def _fetch(self) -> tuple[list[LogRecord], int]:
        raise NotImplementedError  # pragma: no cover - each client defines it

    def read(self, from_offset: int = 0, *, until: int | None = None) -> Iterator[list[LogRecord]]:
        """Yield batches of committed ``(offset, key, value)`` from ``from_offset`` up to the LSO.

        The stopping point is taken once, when the read starts (``until`` overrides it): a
        transaction still open then is not waited for, and records committed after the start
        are left for the next read or :meth:`tail`. Aborted records and transaction markers
        are skipped; they still advance the position, so the read ends.

        Raises:
            ServiceUnavailable: Kafka could not be reached, or the position stopped moving for
                ``stall_timeout_s`` before the target offset.
        """
        end = self.last_stable_offset() if until is None else until
        if from_offset >= end:
            return
        self._seek(from_offset)
        last_move = time.monotonic()
        pos = from_offset
        while pos < end:
            got, new_pos = self._fetch()
            if got:
                batch = got if got[-1][0] < end else [r for r in got if r[0] < end]
                if batch:
                    yield batch
                if got[-1][0] + 1 >= end:
                    return
            if new_pos != pos:
                pos = new_pos
                last_move = time.monotonic()
            elif time.monotonic() - last_move > self._stall_timeout_s:
                raise ServiceUnavailable(
                    f"reading {self.topic}[{self.partition}] stalled at offset {pos} short of {end} "
                    f"for {self._stall_timeout_s:.0f}s",
                    position=pos,
                    end=end,
                )

    def tail(
        self,
        from_offset: int,
        *,
        stop: threading.Event | Callable[[], bool] | None = None,
        yield_empty: bool = False,
    ) -> Iterator[list[LogRecord]]:
        """Yield batches of committed records from ``from_offset`` as they are committed.

        Runs until ``stop`` is set (a :class:`threading.Event` or a callable returning True),
        checked after every poll, so at most ``poll_timeout_ms`` later; or until the caller
        stops iterating. With ``yield_empty`` an empty batch is yielded after each idle poll,
        so the caller can do periodic work (flush, deadlines) without a thread of its own.

        Raises:
            ServiceUnavailable: Kafka could not be reached.
        """
        stopped = stop_check(stop)
        self._seek(from_offset)
        while not stopped():
            got, _ = self._fetch()
            if got:
                yield got
            elif yield_empty:
                yield []

    def read_events(
        self, codec: EventCodec, from_offset: int = 0, *, until: int | None = None
    ) -> Iterator[list[DecodedRecord | Undecodable]]:
        """:meth:`read`, with each record decoded by ``codec``; bad records come back as
        :class:`Undecodable` in their place (route them to the dead-letter topic)."""
        decode_many = codec.decode_many
        for batch in self.read(from_offset, until=until):
            yield decode_many(batch, partition=self.partition)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PartitionReader(ReaderCommon):
    """Reads committed records of one partition, in offset order, in batches.

    Args:
        bootstrap: Kafka bootstrap address.
        topic: the event-log topic.
        partition: the partition to read.
        max_poll_records: most records per yielded batch.
        fetch_max_bytes: most bytes per fetch response.
        max_partition_fetch_bytes: most bytes per partition per fetch.
        poll_timeout_ms: how long one poll waits for data.
        stall_timeout_s: a bounded :meth:`read` raises :class:`ServiceUnavailable` when its
            position does not move for this long while short of the target offset.
        check_crcs: verify each record batch's CRC-32C. ``None`` (default): only when the C
            ``crc32c`` extension is installed; kafka-python's pure-Python CRC-32C took ~45% of
            replay time here, and the broker already verified the CRC when it was produced.
        client_id: shows in broker logs.
        consumer_configs: further :class:`kafka.KafkaConsumer` settings (override the above).
        tls: the client identity and CA (``Settings.tls_files()``); None means plaintext.

    Use as a context manager, or call :meth:`close`. Not thread-safe, except :meth:`tail`'s stop
    flag, which any thread may set.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partition: int,
        *,
        max_poll_records: int = 10_000,
        fetch_max_bytes: int = 64 * 1024 * 1024,
        max_partition_fetch_bytes: int = 16 * 1024 * 1024,
        poll_timeout_ms: int = 500,
        stall_timeout_s: float = 30.0,
        check_crcs: bool | None = None,
        client_id: str | None = None,
        consumer_configs: dict[str, Any] | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self._tp = TopicPartition(topic, partition)
        self._poll_timeout_ms = poll_timeout_ms
        self._stall_timeout_s = stall_timeout_s
        self._max_poll_records = max_poll_records
        configs: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id or f"eventray-reader-{topic}-{partition}",
            "group_id": None,
            "enable_auto_commit": False,
            "isolation_level": "read_committed",
            "auto_offset_reset": "earliest",
            "max_poll_records": max_poll_records,
            "fetch_max_bytes": fetch_max_bytes,
            "max_partition_fetch_bytes": max_partition_fetch_bytes,
            "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
            "check_crcs": _HAVE_C_CRC32C if check_crcs is None else check_crcs,
            **kafka_options(tls, "kafka-python"),
            **(consumer_configs or {}),
        }
        try:
            self._consumer = KafkaConsumer(**configs)
        except _UNAVAILABLE as e:
            raise kafka_unavailable(f"Kafka is not reachable for reader {topic}[{partition}]: {e}",
                                    bootstrap=bootstrap, tls=tls) from e
        self._consumer.assign([self._tp])

    # --- positions ---------------------------------------------------------------------------

    def last_stable_offset(self, timeout_s: float = 30.0) -> int:
        """The partition's end under ``read_committed``: the LSO (first offset of the oldest
        open transaction, or the log end offset when none is open)."""
        try:
            return int(self._consumer.end_offsets([self._tp], timeout_ms=int(timeout_s * 1000))[self._tp])
        except _UNAVAILABLE as e:
            raise ServiceUnavailable(f"could not read the end offset of {self.topic}[{self.partition}]: {e}") from e

    def beginning_offset(self, timeout_s: float = 30.0) -> int:
        """The partition's first offset still in the log."""
        try:
            return int(self._consumer.beginning_offsets([self._tp], timeout_ms=int(timeout_s * 1000))[self._tp])
        except _UNAVAILABLE as e:
            raise ServiceUnavailable(f"could not read the start offset of {self.topic}[{self.partition}]: {e}") from e

    def position(self) -> int:
        """The next offset this reader will look at."""
        return int(self._consumer.position(self._tp))

    # --- reading -----------------------------------------------------------------------------

    def _fetch(self) -> tuple[list[LogRecord], int]:
        try:
            got = self._consumer.poll(timeout_ms=self._poll_timeout_ms).get(self._tp)
            position = int(self._consumer.position(self._tp))
        except _UNAVAILABLE as e:
            raise ServiceUnavailable(f"reading {self.topic}[{self.partition}] failed: {e}") from e
        return ([(r.offset, r.key, r.value) for r in got] if got else []), position

    def _seek(self, offset: int) -> None:
        self._consumer.seek(self._tp, offset)

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the consumer."""
        try:
            self._consumer.close(autocommit=False)
        except Exception as e:  # closing must not mask the caller's own error
            log.warning("closing reader %s[%d]: %s: %s", self.topic, self.partition, type(e).__name__, e)



class PartitionsReader:
    """Tails several partitions of one topic with one consumer: one fetch, one wake-up, for all.

    A projection host reads its partitions once for every projection it applies; one
    consumer per host (not per partition) means an idle host makes one long-polled fetch
    request at a time, held by the broker ``FETCH_MAX_WAIT_MS`` or until a record
    arrives. Reads are ``read_committed``, as :class:`PartitionReader`'s.

    Args:
        bootstrap: Kafka bootstrap address.
        topic: the event-log topic.
        partitions: the partitions to read.
        max_poll_records, fetch_max_bytes, max_partition_fetch_bytes, poll_timeout_ms,
            check_crcs, client_id, tls: as for :class:`PartitionReader`.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: list[int], *, max_poll_records: int = 10_000,
                 fetch_max_bytes: int = 64 * 1024 * 1024, max_partition_fetch_bytes: int = 16 * 1024 * 1024,
                 poll_timeout_ms: int = 500, check_crcs: bool | None = None, client_id: str | None = None,
                 tls: TLSFiles | None = None) -> None:
        self.topic = topic
        self.partitions = list(partitions)
        self._tps = {p: TopicPartition(topic, p) for p in self.partitions}
        self._poll_timeout_ms = poll_timeout_ms
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=bootstrap, client_id=client_id or f"eventray-reader-{topic}",
                group_id=None, enable_auto_commit=False, isolation_level="read_committed",
                auto_offset_reset="earliest", max_poll_records=max_poll_records, fetch_max_bytes=fetch_max_bytes,
                max_partition_fetch_bytes=max_partition_fetch_bytes, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                check_crcs=_HAVE_C_CRC32C if check_crcs is None else check_crcs, **kafka_options(tls, "kafka-python"))
        except _UNAVAILABLE as e:
            raise kafka_unavailable(f"Kafka is not reachable for reader {topic}{self.partitions}: {e}",
                                    bootstrap=bootstrap, tls=tls) from e
        self._consumer.assign(list(self._tps.values()))

    def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` on (the next poll)."""
        self._consumer.seek(self._tps[partition], offset)

    def pause(self, partition: int) -> None:
        """Fetch nothing from ``partition`` until :meth:`resume`."""
        self._consumer.pause(self._tps[partition])

    def resume(self, partition: int) -> None:
        """Fetch ``partition`` again (from its position)."""
        self._consumer.resume(self._tps[partition])

    def position(self, partition: int) -> int:
        """The next offset this reader will look at in ``partition``."""
        return int(self._consumer.position(self._tps[partition]))

    def last_stable_offsets(self, timeout_s: float = 10.0) -> dict[int, int]:
        """``{partition: LSO}`` of every partition read, in one request."""
        try:
            ends = self._consumer.end_offsets(list(self._tps.values()), timeout_ms=int(timeout_s * 1000))
        except _UNAVAILABLE as e:
            raise ServiceUnavailable(f"could not read the end offsets of {self.topic}{self.partitions}: {e}") from e
        return {tp.partition: int(o) for tp, o in ends.items()}

    def poll(self) -> dict[int, list[LogRecord]]:
        """One long-polled fetch: ``{partition: records}`` (empty when nothing came in ``poll_timeout_ms``).

        Raises:
            ServiceUnavailable: Kafka could not be reached.
        """
        try:
            got = self._consumer.poll(timeout_ms=self._poll_timeout_ms)
        except _UNAVAILABLE as e:
            raise ServiceUnavailable(f"tailing {self.topic}{self.partitions} failed: {e}") from e
        return {tp.partition: [(r.offset, r.key, r.value) for r in records] for tp, records in got.items() if records}

    def close(self) -> None:
        """Close the consumer."""
        try:
            self._consumer.close(autocommit=False)
        except Exception as e:  # closing must not mask the caller's own error
            log.warning("closing reader %s%s: %s: %s", self.topic, self.partitions, type(e).__name__, e)


def make_reader(client: str, bootstrap: str, topic: str, partition: int, **options: Any) -> Any:
    """A reader of one partition on the Kafka client ``client`` (``"kafka-python"``, the
    :class:`PartitionReader`, or ``"confluent-kafka"``); ``options`` as its constructor's."""
    if client == "confluent-kafka":
        from eventray.platform.eventlog.rdkafka_reader import RdKafkaPartitionReader

        return RdKafkaPartitionReader(bootstrap, topic, partition, **options)
    _check_client(client)
    return PartitionReader(bootstrap, topic, partition, **options)


def make_partitions_reader(client: str, bootstrap: str, topic: str, partitions: list[int], **options: Any) -> Any:
    """A reader of several partitions with one consumer on the Kafka client ``client``."""
    if client == "confluent-kafka":
        from eventray.platform.eventlog.rdkafka_reader import RdKafkaPartitionsReader

        return RdKafkaPartitionsReader(bootstrap, topic, partitions, **options)
    _check_client(client)
    return PartitionsReader(bootstrap, topic, partitions, **options)


def _check_client(client: str) -> None:
    if client != "kafka-python":
        from eventray.platform.errors import ConfigurationError

        raise ConfigurationError(f"unknown Kafka client {client!r}: set EVENTRAY_KAFKA_CLIENT to kafka-python "
                                 "or confluent-kafka")
