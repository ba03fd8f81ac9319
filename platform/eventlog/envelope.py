"""The record shapes of the event log: what a Kafka value holds and what a reader gets back.

A log record's value is one msgpack array (the :class:`Envelope`, ``array_like``): the
required metadata, the event itself (encoded as the tagged msgspec Struct it is, a map), then
the optional metadata. The key is the aggregate id as UTF-8. Positions are the wire format:
a new envelope field is only ever appended at the end, with a default, so that readers built
before it existed still decode newer records and newer readers decode older ones.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["DecodedRecord", "Envelope", "Undecodable"]


class Envelope(msgspec.Struct, frozen=True, array_like=True, kw_only=True):
    """The metadata around one event, with the event still encoded.

    Attributes:
        event_id: unique id of this event (hex).
        aggregate_type: the aggregate type's name (``"Account"``).
        aggregate_id: the aggregate instance; also the Kafka key.
        version: the aggregate's version after this event (1 for the creating event).
        event_type: the event's msgspec tag (its class name unless configured).
        schema_version: the event type's ``__schema_version__`` when it was written.
        timestamp: wall-clock time of the decision, epoch milliseconds.
        payload: the event, msgpack-encoded; decoded by :class:`~.codec.EventCodec`.
        command_id: the command that produced the event.
        correlation_id: the request the command came in with.
        causation_id: the message (command or event) that caused this one.
        subject: the authenticated caller.
    """

    event_id: str
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    schema_version: int
    timestamp: int | float
    payload: msgspec.Raw
    command_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    subject: str | None = None


class DecodedRecord(msgspec.Struct, frozen=True):
    """A log record decoded into its envelope and its typed event (current schema).

    ``partition`` and ``offset`` are set when the record came from a reader.
    """

    envelope: Envelope
    event: Any
    partition: int | None = None
    offset: int | None = None


class Undecodable(msgspec.Struct, frozen=True, kw_only=True):
    """A log record that could not be decoded; readers return it instead of raising.

    Route it to the dead-letter topic with :func:`~.deadletter.dead_letter_record`.

    Attributes:
        raw: the record's value, exactly as read.
        reason: why it could not be decoded, for a human.
        partition: where it was read from, when known.
        offset: where it was read from, when known.
        key: the record's key, when known.
        event_type: the envelope's event type, when the envelope itself decoded.
        schema_version: the envelope's schema version, when the envelope itself decoded.
    """

    raw: bytes
    reason: str
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None
    event_type: str | None = None
    schema_version: int | None = None
