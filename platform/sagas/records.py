"""The saga topic's records: one per transition, carrying the saga's whole new state.

The key is the saga id. ``seq`` numbers a saga's transitions 1, 2, 3, ... with no gap: a
coordinator writes transition ``n + 1`` only after reading ``n`` back (or writing it), and a
record only exists if its transaction committed, so a repeated or missing ``seq`` in the
committed log is an exactly-once violation (the history checker looks for both). ``trigger``
names the event-log record that caused the transition (``"<partition>:<offset>"``) when a
log event did: what the coordinator read, for the aborted-read check.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["SagaRecord", "decode_record", "encode_record"]


class SagaRecord(msgspec.Struct, frozen=True, array_like=True, kw_only=True):
    """One committed transition of one saga instance."""

    saga_id: str
    saga_type: str
    seq: int
    at_ms: int
    status: str
    why: str
    state: msgspec.Raw
    trigger: str | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SagaRecord)


def encode_record(*, saga_id: str, saga_type: str, seq: int, at_ms: int, status: str, why: str, state: Any,
                  trigger: str | None = None) -> bytes:
    return _encoder.encode(SagaRecord(saga_id=saga_id, saga_type=saga_type, seq=seq, at_ms=at_ms, status=status,
                                      why=why, state=msgspec.Raw(_encoder.encode(state)), trigger=trigger))


def decode_record(value: bytes) -> SagaRecord:
    return _decoder.decode(value)
