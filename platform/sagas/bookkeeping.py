"""The saga coordinator's bookkeeping types: instances, pending transitions, starts, stats.

Also the cheap envelope peek that lets a coordinator skip events its saga does not react to,
and :func:`owner_of`, which maps a saga id to its saga-topic partition.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any

import msgspec

from eventray.platform.sagas.definition import Effect, SagaDefinition

__all__ = ["CoordinatorConfig", "Instance", "Pending", "Start", "Stats", "event_type_of", "load_instances", "now_ms",
           "owner_of"]


class _Peek(msgspec.Struct, array_like=True):
    """The head of an event envelope (extra trailing elements are ignored): enough to filter."""

    event_id: str
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str


_peek = msgspec.msgpack.Decoder(_Peek).decode


def event_type_of(value: bytes) -> str | None:
    try:
        return _peek(value).event_type
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None  # not an envelope: the full decode reports it where it matters


def owner_of(saga_id: str, coordinators: int) -> int:
    """The coordinator (and saga-topic partition) of a saga id."""
    return zlib.crc32(saga_id.encode()) % coordinators


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class CoordinatorConfig:
    poll_ms: int = 10
    idle_poll_ms: int = 200
    offsets_every_s: float = 1.0
    max_batch: int = 5_000
    resync_backoff_max_s: float = 2.0
    start_timeout_s: float = 20.0


@dataclass
class Instance:
    state: Any
    seq: int
    terminal: bool
    #: when the saga started (its first transition), epoch ms
    started_at_ms: int


@dataclass
class Start:
    request: Any
    future: asyncio.Future[Any]


@dataclass
class Pending:
    """A transition decided this turn, waiting for its commit."""

    saga_id: str
    state: Any
    seq: int
    why: str
    trigger: str | None
    effects: tuple[Effect, ...]


@dataclass
class Stats:
    transitions: int = 0
    transactions: int = 0
    commit_failures: int = 0
    resyncs: int = 0
    events_seen: int = 0
    started: int = 0
    commands_sent: int = 0
    asks: int = 0
    deadlines_fired: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def load_instances(values: Iterable[bytes], definition: SagaDefinition[Any], decoder: Any) -> dict[str, Instance]:
    """The latest committed state of every saga of ``definition`` in a saga-topic partition's record
    ``values`` (in log order), with when each started (its first transition)."""
    from eventray.platform.sagas.records import decode_record

    instances: dict[str, Instance] = {}
    for value in values:
        rec = decode_record(value)
        if rec.saga_type != definition.name:
            continue
        state = decoder.decode(rec.state)
        before = instances.get(rec.saga_id)
        started = before.started_at_ms if before is not None and rec.seq > 1 else rec.at_ms
        instances[rec.saga_id] = Instance(state=state, seq=rec.seq, terminal=definition.is_terminal(state),
                                          started_at_ms=started)
    return instances
