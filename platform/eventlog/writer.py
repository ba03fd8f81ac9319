"""The single transactional writer of one event-log partition.

A shard owns its partition through a transactional id: :meth:`TransactionalWriter.init`
calls ``init_transactions``, which bumps the producer epoch and so fences any older writer
(a zombie incarnation) with the same id, and settles a transaction it left open. Each
:meth:`~TransactionalWriter.append_batch` is one Kafka transaction: all of the batch is
visible to ``read_committed`` readers, or none of it.

kafka-python 3.0.x drives the transaction RPCs only up to the pre-KIP-890 versions
(``AddPartitionsToTxn``/``EndTxn``/``TxnOffsetCommit`` are capped at v3 in
``kafka/producer/transaction_manager.py``; v4+/v5 are KIP-890's). So the epoch is *not*
bumped per transaction and a commit that times out leaves the transaction's outcome unknown:
the same producer must not go on. :meth:`~TransactionalWriter.recreate` closes it and runs
``init_transactions`` again, which makes the coordinator finish or abort the old transaction
before it returns; then the caller re-reads the partition to learn what happened.

Blocking API: call it from one thread at a time (the shard actor uses ``asyncio.to_thread``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import kafka.errors as kerr
from kafka import KafkaProducer

from eventray.platform.errors import (
    CommitFailed,
    CommitOutcomeUnknown,
    ConfigurationError,
    Fenced,
    ServiceUnavailable,
)
from eventray.platform.tls import TLSFiles, kafka_options, kafka_unavailable

__all__ = ["KAFKA_CLIENTS", "TransactionalWriter", "make_writer"]

log = logging.getLogger(__name__)

_FENCING = (kerr.ProducerFencedError, kerr.InvalidProducerEpochError)
_PERMANENT = (
    kerr.TransactionalIdAuthorizationFailedError,
    kerr.ClusterAuthorizationFailedError,
    kerr.TopicAuthorizationFailedError,
    kerr.MessageSizeTooLargeError,
    kerr.RecordListTooLargeError,
    kerr.UnsupportedVersionError,
)


class _Timeout(Exception):
    """A bounded wait on the transaction coordinator ran out."""


class WriterLifecycle:
    """What both Kafka clients' writers share: re-creating, closing and the fenced state.

    A subclass sets ``transactional_id``, ``_producer``, ``_fenced`` and ``_needs_recreate``,
    and defines ``init()`` and ``_shut(producer, timeout_s)``.
    """

    transactional_id: str
    _producer: Any
    _fenced: Fenced | None
    _needs_recreate: bool

    def init(self) -> None:  # pragma: no cover - each client defines it
        raise NotImplementedError

    def _shut(self, producer: Any, timeout_s: float) -> None:  # pragma: no cover - each client defines it
        raise NotImplementedError

    def recreate(self) -> None:
        """Close the producer and :meth:`init` a new one with the same transactional id.

        Needed after :class:`CommitOutcomeUnknown` (kafka-python has no KIP-890 epoch bump per
        transaction, so the old producer must not go on). The new ``init_transactions`` makes
        the coordinator complete or abort the previous transaction first; re-read the
        partition afterwards to learn which.

        Raises:
            Fenced: this writer was fenced; it must not take the partition back.
            ServiceUnavailable, ConfigurationError: as :meth:`init`.
        """
        if self._fenced is not None:
            raise self._fenced
        self._close_producer(timeout_s=0)
        self._needs_recreate = True
        self.init()

    reset = recreate

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the producer; an open transaction is left to the coordinator to abort."""
        self._close_producer(timeout_s)

    def _close_producer(self, timeout_s: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                self._shut(producer, timeout_s)
            except Exception as e:  # closing must not mask the error that led here
                log.warning("closing producer %s: %s: %s", self.transactional_id, type(e).__name__, e)

    @property
    def usable(self) -> bool:
        """True when :meth:`append_batch` may be called (initialised, not fenced, no unknown outcome)."""
        return self._producer is not None and self._fenced is None and not self._needs_recreate

    @property
    def fenced(self) -> bool:
        """True once a newer writer with the same transactional id took over."""
        return self._fenced is not None


class TransactionalWriter(WriterLifecycle):
    """Appends batches of records to one partition, one Kafka transaction per batch.

    Args:
        bootstrap: Kafka bootstrap address.
        topic: the event-log topic.
        partition: the partition this writer owns; every record goes there.
        transactional_id: stable per partition (``eventray-<topic>-<partition>``), so a new
            incarnation fences the old one.
        transaction_timeout_ms: the coordinator aborts a transaction left open this long.
        commit_timeout_s: how long a commit (or abort) may take before its outcome is
            declared unknown (:class:`CommitOutcomeUnknown`).
        linger_ms: producer batching delay. Every commit flushes at once, so this adds no
            latency to a transaction; a long linger keeps the sender thread from shipping (and
            contending for the GIL over) partial batches while a batch is being appended.
            Measured: 500-record batches went from ~18k to ~30k events/s with 1 -> 100 ms.
        batch_size: producer batch bytes; large, so a transaction is few produce requests.
        max_request_size: largest produce request; keep at most the broker's
            ``message.max.bytes``.
        compression_type: ``None`` (default: cheapest on CPU for a local broker), or a codec
            kafka-python supports with its library installed (``"lz4"`` needs ``lz4``).
        max_block_ms: bound on ``init_transactions``, metadata and buffer waits.
        client_id: shows in broker logs and metrics.
        producer_configs: further :class:`kafka.KafkaProducer` settings (override the above).
        tls: the client identity and CA (``Settings.tls_files()``); None means plaintext.

    Call :meth:`init` before the first :meth:`append_batch`.
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
        linger_ms: int = 100,
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
        self._commit_timeout_ms = int(commit_timeout_s * 1000)
        self._bootstrap, self._tls = bootstrap, tls
        self._configs: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": client_id or f"eventray-writer-{topic}-{partition}",
            "transactional_id": transactional_id,
            "enable_idempotence": True,
            "acks": "all",
            "max_in_flight_requests_per_connection": 5,  # idempotence keeps order up to 5
            "transaction_timeout_ms": transaction_timeout_ms,
            "linger_ms": linger_ms,
            "batch_size": batch_size,
            "max_request_size": max_request_size,
            "compression_type": compression_type,
            "max_block_ms": max_block_ms,
            "retry_backoff_ms": retry_backoff_ms,
            **kafka_options(tls, "kafka-python"),
            **(producer_configs or {}),
        }
        self._producer: KafkaProducer | None = None
        self._fenced: Fenced | None = None
        self._needs_recreate = False

    # --- lifecycle ---------------------------------------------------------------------------

    def init(self) -> None:
        """Create the producer and run ``init_transactions``, fencing older writers.

        Raises:
            ServiceUnavailable: Kafka could not be reached or did not answer in time (retryable:
                call :meth:`init` again).
            ConfigurationError: the broker refuses this transactional id or producer settings.
            Fenced: this writer was already fenced; make a new incarnation instead.
        """
        if self._fenced is not None:
            raise self._fenced
        if self._producer is not None and not self._needs_recreate:
            return
        self._close_producer(timeout_s=0)
        try:
            producer = KafkaProducer(**self._configs)
        except (kerr.KafkaConnectionError, kerr.KafkaTimeoutError) as e:
            raise kafka_unavailable(f"Kafka is not reachable for writer {self.transactional_id}: {e}",
                                    bootstrap=self._bootstrap, tls=self._tls) from e
        except (kerr.KafkaConfigurationError, kerr.UnsupportedCodecError, ValueError, AssertionError) as e:
            raise ConfigurationError(f"bad producer settings for {self.transactional_id}: {e}") from e
        try:
            producer.init_transactions()
        except kerr.KafkaTimeoutError as e:
            producer.close(timeout=0)
            raise kafka_unavailable(f"init_transactions for {self.transactional_id} timed out: {e}",
                                    bootstrap=self._bootstrap, tls=self._tls) from e
        except _PERMANENT as e:
            producer.close(timeout=0)
            raise ConfigurationError(f"Kafka refused transactional id {self.transactional_id}: {e}") from e
        except kerr.KafkaError as e:
            producer.close(timeout=0)
            raise ServiceUnavailable(f"init_transactions for {self.transactional_id} failed: {e}") from e
        self._producer = producer
        self._needs_recreate = False
        log.info("writer %s owns %s[%d]", self.transactional_id, self.topic, self.partition)

    def _shut(self, producer: Any, timeout_s: float) -> None:
        producer.close(timeout=timeout_s)

    # --- writing -----------------------------------------------------------------------------

    def append_batch(
        self,
        records: Sequence[tuple[bytes | None, bytes]],
        *,
        consumed_offsets: Mapping[tuple[str, int], int] | None = None,
        group_metadata: Any = None,
    ) -> list[int]:
        """Write ``(key, value)`` records to the partition in one transaction.

        With ``consumed_offsets`` (``{(topic, partition): next offset to consume}``) the same
        transaction also commits those offsets for the consumer group of ``group_metadata``
        (``KafkaConsumer.group_metadata()``, or a group id), through
        ``send_offsets_to_transaction``: a consume-transform-produce step whose output and
        input position commit together, or not at all.

        Returns:
            The log offset of each record, in order. (The commit marker takes the next
            offset, so the partition's end offset is ``offsets[-1] + 2`` when no other writer is
            active.)

        Raises:
            Fenced: a newer writer owns the partition; this writer is unusable from now on.
            CommitOutcomeUnknown: the commit timed out and may have happened; call
                :meth:`recreate`, then re-read the partition before retrying.
            CommitFailed: nothing of the batch was written (aborted); safe to retry. The
                writer has already re-created its producer (or, if that failed, the next
                append raises until :meth:`recreate` succeeds).
            ConfigurationError: a permanent refusal (a record over ``max_request_size``,
                missing authorisation); retrying will fail the same way.
        """
        if self._fenced is not None:
            raise self._fenced
        producer = self._producer
        if producer is None or self._needs_recreate:
            raise CommitFailed(
                f"writer {self.transactional_id} must be (re)initialised before writing: call "
                "recreate()" if self._needs_recreate else "init()"
            )
        if not records and not consumed_offsets:
            return []
        topic, partition = self.topic, self.partition
        try:
            producer.begin_transaction()
            send = producer.send
            futures = [send(topic, value=value, key=key, partition=partition) for key, value in records]
            if consumed_offsets:
                self._send_offsets(consumed_offsets, group_metadata)
        except _Timeout as e:
            self._abort_after(kerr.KafkaTimeoutError("send_offsets_to_transaction timed out"), stage="offsets")
            raise AssertionError("unreachable") from e
        except Exception as e:
            self._abort_after(e, stage="send")
            raise AssertionError("unreachable") from e  # _abort_after always raises
        try:
            self._end_transaction(commit=True)
        except _Timeout as e:
            self._needs_recreate = True
            raise CommitOutcomeUnknown(
                f"commit of {len(records)} records to {topic}[{partition}] did not finish within "
                f"{self._commit_timeout_ms} ms; its outcome is unknown",
                transactional_id=self.transactional_id,
            ) from e
        except Exception as e:
            self._abort_after(e, stage="commit")
        failed = [f.exception for f in futures if f.exception is not None or f.value is None]
        if failed:
            # kafka-python 3.0.12 can report a commit as successful while records of the
            # transaction failed (seen after an abort that bumped the epoch: the next batch got
            # OutOfOrderSequenceNumber and the commit went through without it). Whatever did
            # commit is visible, so the batch is neither whole nor absent.
            self._needs_recreate = True
            raise CommitOutcomeUnknown(
                f"commit on {topic}[{partition}] reported success but {len(failed)} of "
                f"{len(records)} records failed ({failed[0]!r}); call recreate() and re-read the partition",
                transactional_id=self.transactional_id,
            )
        return [f.value.offset for f in futures]

    def _send_offsets(self, offsets: Mapping[tuple[str, int], int], group_metadata: Any) -> None:
        # KafkaProducer.send_offsets_to_transaction waits without a bound; same steps, bounded.
        from kafka.structs import OffsetAndMetadata, TopicPartition

        producer = self._producer
        assert producer is not None
        if group_metadata is None:
            raise ConfigurationError("consumed offsets need the consumer's group metadata (or group id)")
        tm = getattr(producer, "_transaction_manager", None)
        sender = getattr(producer, "_sender", None)
        committed = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
        if tm is None or sender is None:  # pragma: no cover - a kafka-python without them
            producer.send_offsets_to_transaction(committed, group_metadata)
            return
        result = tm.send_offsets_to_transaction(committed, group_metadata)
        sender.wakeup()
        if not result.wait(timeout_ms=self._commit_timeout_ms):
            raise _Timeout()
        if result.failed:
            raise result.exception

    def _end_transaction(self, *, commit: bool) -> None:
        # kafka-python's commit_transaction()/abort_transaction() wait without a bound when the
        # coordinator is unreachable; drive the same steps with a bounded wait instead. The
        # private names are pinned by the kafka-python>=3.0,<3.1 requirement.
        producer = self._producer
        assert producer is not None
        tm = getattr(producer, "_transaction_manager", None)
        sender = getattr(producer, "_sender", None)
        if tm is None or sender is None:  # pragma: no cover - a kafka-python without them
            producer.commit_transaction() if commit else producer.abort_transaction()
            return
        result = tm.begin_commit() if commit else tm.begin_abort()
        sender.wakeup()
        if not result.wait(timeout_ms=self._commit_timeout_ms):
            raise _Timeout()

    def _abort_after(self, error: BaseException, *, stage: str) -> None:
        """Translate ``error`` from ``stage`` into eventray's types, aborting if it helps. Always raises."""
        where = f"{self.topic}[{self.partition}] ({self.transactional_id}, {stage})"
        if isinstance(error, _FENCING):
            self._fenced = Fenced(
                f"writer {self.transactional_id} was fenced by a newer incarnation during {stage}",
                transactional_id=self.transactional_id,
            )
            self._close_producer(timeout_s=0)
            raise self._fenced from error
        # anything else: try to abort, so the outcome is known and the producer can go on
        try:
            self._end_transaction(commit=False)
            aborted = True
        except _FENCING as e:
            self._fenced = Fenced(f"writer {self.transactional_id} was fenced (found while aborting)")
            self._close_producer(timeout_s=0)
            raise self._fenced from e
        except Exception as e:  # the abort failed: only a new producer settles the transaction
            log.warning("abort after %s failed on %s: %s: %s", stage, where, type(e).__name__, e)
            aborted = False
            self._needs_recreate = True
        if aborted:
            # Start the next batch on a fresh producer: kafka-python 3.0.12's in-place recovery
            # after an abortable error (epoch bump) loses the next transaction's records.
            try:
                self.recreate()
            except Exception as e:
                log.warning("re-creating writer %s after an abort failed: %s: %s",
                            self.transactional_id, type(e).__name__, e)
                self._needs_recreate = True
        if isinstance(error, _PERMANENT):
            raise ConfigurationError(
                f"Kafka refused the batch for {where}: {type(error).__name__}: {error}. Check "
                "record sizes against max_request_size and the broker's message.max.bytes, and "
                "the producer's authorisation.",
                transactional_id=self.transactional_id,
            ) from error
        if aborted:
            raise CommitFailed(
                f"transaction on {where} failed and was aborted: {type(error).__name__}: {error}",
                transactional_id=self.transactional_id,
            ) from error
        if stage == "send":  # never asked to commit: the coordinator can only abort it
            raise CommitFailed(
                f"transaction on {where} failed before commit: {type(error).__name__}: {error}; "
                "call recreate() before the next batch",
                transactional_id=self.transactional_id,
            ) from error
        raise CommitOutcomeUnknown(
            f"commit on {where} failed ({type(error).__name__}: {error}) and could not be aborted; "
            "call recreate() and re-read the partition",
            transactional_id=self.transactional_id,
        ) from error


#: the values of the ``kafka_client`` setting
KAFKA_CLIENTS = ("kafka-python", "confluent-kafka")


def make_writer(client: str, bootstrap: str, topic: str, partition: int, transactional_id: str,
                **options: Any) -> Any:
    """A transactional writer of ``topic[partition]`` on the Kafka client ``client``.

    ``client`` is ``"kafka-python"`` (:class:`TransactionalWriter`) or ``"confluent-kafka"``
    (:class:`~eventray.platform.eventlog.rdkafka_writer.RdKafkaTransactionalWriter`); both keep
    the same contract. ``options`` are the constructor's keyword arguments.
    """
    if client == "kafka-python":
        return TransactionalWriter(bootstrap, topic, partition, transactional_id, **options)
    if client == "confluent-kafka":
        from eventray.platform.eventlog.rdkafka_writer import RdKafkaTransactionalWriter

        return RdKafkaTransactionalWriter(bootstrap, topic, partition, transactional_id, **options)
    raise ConfigurationError(f"unknown Kafka client {client!r}: set EVENTRAY_KAFKA_CLIENT to one of "
                             f"{', '.join(KAFKA_CLIENTS)}")
