"""eventray.platform.eventlog: the Kafka event log, behind eventray's own types.

- :class:`EventCodec` turns events plus their :class:`Envelope` into record values and back
  (:class:`DecodedRecord`, or :class:`Undecodable` for a bad record, never an exception).
- :class:`TransactionalWriter` appends a batch to one partition in one Kafka transaction.
- :class:`PartitionReader` replays a partition up to its last stable offset, or tails it.
- :func:`ensure_topic` and :func:`partition_for` keep topics and key routing consistent.
- :class:`DeadLetterPublisher` keeps what could not be decoded.

Callers never see ``kafka.errors``: failures arrive as :mod:`eventray.platform.errors` types.
"""

from eventray.platform.eventlog.admin import describe_partitions, ensure_topic, partition_for
from eventray.platform.eventlog.codec import EventCodec, Upcaster
from eventray.platform.eventlog.deadletter import DeadLetterPublisher, dead_letter_record
from eventray.platform.eventlog.envelope import DecodedRecord, Envelope, Undecodable
from eventray.platform.eventlog.reader import LogRecord, PartitionReader
from eventray.platform.eventlog.writer import TransactionalWriter

__all__ = [
    "DeadLetterPublisher",
    "DecodedRecord",
    "Envelope",
    "EventCodec",
    "LogRecord",
    "PartitionReader",
    "TransactionalWriter",
    "Undecodable",
    "Upcaster",
    "dead_letter_record",
    "describe_partitions",
    "ensure_topic",
    "partition_for",
]
