"""The transactional writer of one partition on confluent-kafka (librdkafka).

Same contract as :class:`~eventray.platform.eventlog.writer.TransactionalWriter`, the
kafka-python writer: :meth:`RdKafkaTransactionalWriter.init` fences older writers with the
same transactional id, each :meth:`~RdKafkaTransactionalWriter.append_batch` is one Kafka
transaction, and failures arrive as eventray's types (:class:`Fenced`, :class:`CommitFailed`,
:class:`CommitOutcomeUnknown`, :class:`ConfigurationError`, :class:`ServiceUnavailable`).
The setting ``kafka_client`` (``EVENTRAY_KAFKA_CLIENT``) chooses between the two;
:func:`eventray.platform.eventlog.writer.make_writer` builds the chosen one.

librdkafka sends the records and the transaction requests from its own C threads, so a commit
does not wait on the Python sender thread or the GIL. It implements no KIP-890 either
(librdkafka#5423), so an unknown commit outcome is settled the same way: :meth:`recreate` makes
a new producer whose ``init_transactions`` finishes or aborts the old transaction, and the
caller re-reads the partition.

Consumed offsets (``append_batch(consumed_offsets=...)``) need a confluent-kafka consumer's
group metadata; eventray's saga coordinators consume with kafka-python and keep the
kafka-python writer.

Blocking API: call it from one thread at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from eventray.platform.errors import (
    CommitFailed,
    CommitOutcomeUnknown,
    ConfigurationError,
    Fenced,
    ServiceUnavailable,
)
from eventray.platform.eventlog.writer import WriterLifecycle
from eventray.platform.tls import TLSFiles, kafka_options, kafka_unavailable

__all__ = ["RdKafkaTransactionalWriter"]

log = logging.getLogger(__name__)


def _kafka() -> Any:
    try:
        import confluent_kafka
    except ImportError as e:  # pragma: no cover - it is a dependency of eventray
        raise ConfigurationError(
            "EVENTRAY_KAFKA_CLIENT=confluent-kafka needs the confluent-kafka package: "
            "pip install confluent-kafka, or set EVENTRAY_KAFKA_CLIENT=kafka-python"
        ) from e
    return confluent_kafka


class RdKafkaTransactionalWriter(WriterLifecycle):
    """Appends batches of records to one partition, one Kafka transaction per batch (librdkafka).

    Args: those of :class:`~eventray.platform.eventlog.writer.TransactionalWriter`, with the
    same meaning, mapped to librdkafka's settings (``max_request_size`` is its
    ``message.max.bytes``, the largest record it lets through; ``producer_configs`` are
    librdkafka settings). ``linger_ms`` defaults to 5: a commit flushes at once whatever it is.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partition: int,
        transactional_id: str,
        *,
        transaction_timeout_ms: int = 60_000,
        commit_timeout_s: float = 30.0,
        linger_ms: int = 5,
        batch_size: int = 512 * 1024,
        max_request_size: int = 1024 * 1024,
        compression_type: str | None = None,
        max_block_ms: int = 30_000,
        retry_backoff_ms: int = 2,
        client_id: str | None = None,
        producer_configs: dict[str, Any] | None = None,
        tls: TLSFiles | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.transactional_id = transactional_id
        self._commit_timeout_s = commit_timeout_s
        self._init_timeout_s = max_block_ms / 1000
        self._bootstrap, self._tls = bootstrap, tls
        self._configs: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id or f"eventray-writer-{topic}-{partition}",
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "acks": "all",
            "max.in.flight.requests.per.connection": 5,
            "transaction.timeout.ms": transaction_timeout_ms,
            "linger.ms": linger_ms,
            "batch.size": batch_size,
            "message.max.bytes": max_request_size,
            "compression.type": compression_type or "none",
            "retry.backoff.ms": max(1, retry_backoff_ms),
            "socket.nagle.disable": True,
            "logger": logging.getLogger("eventray.eventlog.librdkafka"),
            "on_delivery": self._delivered,
            **kafka_options(tls, "confluent-kafka"),
            **(producer_configs or {}),
        }
        self._producer: Any = None
        self._fenced: Fenced | None = None
        self._needs_recreate = False
        self._reports: list[tuple[Any, int]] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def init(self) -> None:
        """Create the producer and run ``init_transactions``, fencing older writers.

        Raises:
            ServiceUnavailable: Kafka could not be reached or did not answer in time (retryable).
            ConfigurationError: the broker or librdkafka refuses these settings.
            Fenced: this writer was already fenced; make a new incarnation instead.
        """
        if self._fenced is not None:
            raise self._fenced
        if self._producer is not None and not self._needs_recreate:
            return
        self._close_producer(timeout_s=0)
        ck = _kafka()
        try:
            producer = ck.Producer(self._configs)
        except (ck.KafkaException, ValueError, TypeError) as e:
            raise ConfigurationError(f"bad producer settings for {self.transactional_id}: {e}") from e
        try:
            producer.init_transactions(self._init_timeout_s)
        except ck.KafkaException as e:
            err = e.args[0] if e.args else None
            producer.flush(0)
            if err is not None and not err.retriable() and err.fatal():
                raise ConfigurationError(f"Kafka refused transactional id {self.transactional_id}: {err.str()}") from e
            raise kafka_unavailable(f"init_transactions for {self.transactional_id} failed: {err.str() if err else e}",
                                    bootstrap=self._bootstrap, tls=self._tls) from e
        self._producer = producer
        self._needs_recreate = False
        log.info("writer %s owns %s[%d] (librdkafka)", self.transactional_id, self.topic, self.partition)

    def _shut(self, producer: Any, timeout_s: float) -> None:
        producer.flush(timeout_s)  # the handle is destroyed with its last reference

    # --- writing -----------------------------------------------------------------------------

    def _delivered(self, err: Any, msg: Any) -> None:
        self._reports.append((err, msg.offset()))

    def append_batch(
        self,
        records: Sequence[tuple[bytes | None, bytes]],
        *,
        consumed_offsets: Mapping[tuple[str, int], int] | None = None,
        group_metadata: Any = None,
    ) -> list[int]:
        """Write ``(key, value)`` records to the partition in one transaction.

        Returns:
            The log offset of each record, in order.

        Raises:
            Fenced, CommitOutcomeUnknown, CommitFailed, ConfigurationError: as
            :meth:`TransactionalWriter.append_batch`.
        """
        if self._fenced is not None:
            raise self._fenced
        producer = self._producer
        if producer is None or self._needs_recreate:
            raise CommitFailed(
                f"writer {self.transactional_id} must be (re)initialised before writing: call "
                "recreate()" if self._needs_recreate else "init()"
            )
        if consumed_offsets:
            raise ConfigurationError(
                "the librdkafka writer does not commit consumer offsets (they need a confluent-kafka "
                "consumer's group metadata); use the kafka-python writer for consume-transform-produce"
            )
        if not records:
            return []
        ck = _kafka()
        topic, partition = self.topic, self.partition
        reports: list[tuple[Any, int]] = []
        self._reports = reports
        try:
            producer.begin_transaction()
            produce, poll = producer.produce, producer.poll
            for key, value in records:
                try:
                    produce(topic, value, key, partition)
                except BufferError:  # the local queue is full: let deliveries drain, then go on
                    poll(0.05)
                    produce(topic, value, key, partition)
        except ck.KafkaException as e:
            self._after_error(e.args[0] if e.args else None, e, stage="send")
        except Exception as e:  # noqa: BLE001 - e.g. a bad key type: abort, then raise typed
            self._after_error(None, e, stage="send")
        try:
            producer.commit_transaction(self._commit_timeout_s)
        except ck.KafkaException as e:
            err = e.args[0] if e.args else None
            if err is not None and err.retriable() and not err.txn_requires_abort():
                self._needs_recreate = True
                raise CommitOutcomeUnknown(
                    f"commit of {len(records)} records to {topic}[{partition}] did not finish within "
                    f"{self._commit_timeout_s} s ({err.str()}); its outcome is unknown",
                    transactional_id=self.transactional_id,
                ) from e
            self._after_error(err, e, stage="commit")
        failed = [err for err, _ in reports if err is not None]
        if failed or len(reports) != len(records):
            self._needs_recreate = True
            raise CommitOutcomeUnknown(
                f"commit on {topic}[{partition}] reported success but {len(failed)} of {len(records)} "
                f"records failed or went unreported ({len(reports)} reports); call recreate() and re-read the partition",
                transactional_id=self.transactional_id,
            )
        return [offset for _, offset in reports]

    def _after_error(self, err: Any, error: BaseException, *, stage: str) -> None:
        """Translate a failure at ``stage`` into eventray's types, aborting where it helps. Always raises."""
        ck = _kafka()
        where = f"{self.topic}[{self.partition}] ({self.transactional_id}, {stage})"
        text = err.str() if err is not None else f"{type(error).__name__}: {error}"
        if err is not None and _is_fencing(ck, err):
            self._fenced = Fenced(f"writer {self.transactional_id} was fenced by a newer incarnation during {stage}",
                                  transactional_id=self.transactional_id)
            self._close_producer(timeout_s=0)
            raise self._fenced from error
        if err is not None and err.fatal():
            self._needs_recreate = True
            self._close_producer(timeout_s=0)
            if stage == "commit":
                raise CommitOutcomeUnknown(f"commit on {where} failed fatally ({text}); call recreate() and "
                                           "re-read the partition", transactional_id=self.transactional_id) from error
            raise CommitFailed(f"transaction on {where} failed before commit ({text}); call recreate()",
                               transactional_id=self.transactional_id) from error
        aborted = False
        try:
            assert self._producer is not None
            self._producer.abort_transaction(self._commit_timeout_s)
            aborted = True
        except ck.KafkaException as e:
            abort_err = e.args[0] if e.args else None
            if abort_err is not None and _is_fencing(ck, abort_err):
                self._fenced = Fenced(f"writer {self.transactional_id} was fenced (found while aborting)")
                self._close_producer(timeout_s=0)
                raise self._fenced from e
            log.warning("abort after %s failed on %s: %s", stage, where, abort_err.str() if abort_err else e)
            self._needs_recreate = True
        reports = self._reports
        if aborted:
            # Start the next batch on a fresh producer: after a refused record librdkafka still
            # bumps the epoch in the background (OUT_OF_ORDER_SEQUENCE_NUMBER, "requires epoch
            # bump"), and a transaction begun meanwhile fails.
            try:
                self.recreate()
            except Exception as e:  # noqa: BLE001 - the next append raises until recreate() succeeds
                log.warning("re-creating writer %s after an abort failed: %s: %s",
                            self.transactional_id, type(e).__name__, e)
                self._needs_recreate = True
        # the commit names the last failure; the delivery reports hold the first (the cause)
        cause = next((e for e, _ in reports if e is not None and _is_permanent(ck, e)), err)
        if _is_permanent(ck, cause):
            text = cause.str()
            raise ConfigurationError(
                f"Kafka refused the batch for {where}: {text}. Check record sizes against "
                "max_request_size and the broker's message.max.bytes, and the producer's authorisation.",
                transactional_id=self.transactional_id,
            ) from error
        if aborted or stage == "send":
            raise CommitFailed(f"transaction on {where} failed and was aborted: {text}",
                               transactional_id=self.transactional_id) from error
        raise CommitOutcomeUnknown(f"commit on {where} failed ({text}) and could not be aborted; call "
                                   "recreate() and re-read the partition", transactional_id=self.transactional_id) from error


def _is_fencing(ck: Any, err: Any) -> bool:
    codes = {ck.KafkaError._FENCED, ck.KafkaError.PRODUCER_FENCED, ck.KafkaError.INVALID_PRODUCER_EPOCH}
    return err.code() in codes or (err.code() == ck.KafkaError._FATAL and "fenced" in err.str().lower())


def _is_permanent(ck: Any, err: Any) -> bool:
    if err is None:
        return False
    E = ck.KafkaError
    codes = {E.MSG_SIZE_TOO_LARGE, E.INVALID_MSG_SIZE, E.RECORD_LIST_TOO_LARGE,
             E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, E.CLUSTER_AUTHORIZATION_FAILED,
             E.TOPIC_AUTHORIZATION_FAILED, E.UNSUPPORTED_VERSION}
    if err.code() in codes:
        return True
    # an abortable commit error names the delivery failure that caused it
    return "size too large" in err.str().lower() or "message_size_too_large" in err.str().lower()
