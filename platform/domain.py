"""The small domain API that aggregates, sagas and projections build on.

Events and commands are frozen, tagged msgspec Structs. An aggregate is a pair of pure
functions: ``decide(state, command) -> tuple[Event, ...]`` raises a named
:class:`~eventray.platform.errors.DomainError` when a rule is broken, and
``evolve(state, event) -> state`` never fails and never does I/O. The runtime (shards,
projections) owns versions, offsets and transactions; the domain never sees them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import msgspec

from eventray.platform.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    DomainError,
    Forbidden,
    InvalidCommand,
    NotFound,
    RuleViolation,
)

__all__ = [
    "AggregateType",
    "AlreadyExists",
    "Command",
    "ConcurrencyConflict",
    "ID_PATTERN",
    "Id",
    "DomainError",
    "Event",
    "Forbidden",
    "InvalidCommand",
    "NotFound",
    "RuleViolation",
    "new_id",
]


#: what an id sent through the API may hold: 1 to 128 of these characters
ID_PATTERN = r"^[A-Za-z0-9._:@-]+$"
MAX_ID_LENGTH = 128

#: a command field holding another aggregate's id: checked like the API's ids, an ``ID`` in GraphQL
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN,
                                 extra={"graphql": "ID"})]


def new_id() -> str:
    """A fresh random identifier (UUID4, hex)."""
    return uuid.uuid4().hex


class Event(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Base of every domain event. Subclasses are tagged with their class name.

    ``__schema_version__`` is bumped on a breaking change, together with an upcaster from
    the previous version registered with the codec.
    """

    __schema_version__: ClassVar[int] = 1


class Command(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Base of every command.

    A command class that creates its aggregate may set ``creates = True`` (a ``ClassVar``):
    the API then lets a caller leave the id out, and generates one.

    Attributes:
        aggregate_id: the aggregate the command is for; also the Kafka key.
        command_id: idempotency key; a repeated id returns the first outcome.
        expected_version: optimistic concurrency check, ``None`` to skip it.
        subject: the authenticated caller, for audit and authorisation.
        correlation_id: the request id the command came in with.
    """

    aggregate_id: str
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None
    subject: str | None = None
    correlation_id: str | None = None

    #: whether the command creates its aggregate (the API may generate its id)
    creates: ClassVar[bool] = False


S = TypeVar("S")
Decide = Callable[[Any, Any], tuple[Event, ...]]
Evolve = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class AggregateType(Generic[S]):
    """Everything the runtime needs to host one kind of aggregate.

    Attributes:
        name: the aggregate type's name, stored in every event envelope (``"User"``).
        state_type: a msgspec Struct type; snapshots encode it.
        decide: pure decision function; ``state`` is ``None`` before the first event.
        evolve: pure state transition; ``state`` is ``None`` for the creating event.
        commands: the command types this aggregate handles.
        events: the event types it emits.
        state_schema_version: bumped when ``state_type`` changes incompatibly, so old
            snapshots are ignored and rebuilt from the log.
    """

    name: str
    state_type: type[S]
    decide: Decide
    evolve: Evolve
    commands: tuple[type[Command], ...]
    events: tuple[type[Event], ...]
    state_schema_version: int = 1
    _command_set: frozenset[type[Command]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_command_set", frozenset(self.commands))
        if not self.commands or not self.events:
            raise ValueError(f"aggregate {self.name!r} must declare its command and event types")

    def handles(self, command: Command) -> bool:
        """True when ``command`` is one of this aggregate's command types."""
        return type(command) in self._command_set

    def fold(self, events: Iterable[Event], state: S | None = None) -> S | None:
        """Apply ``events`` in order to ``state`` (``None`` = not yet created)."""
        evolve = self.evolve
        for event in events:
            state = evolve(state, event)
        return state


def event_tag(event_type: type[Event]) -> str:
    """The tag msgspec writes for ``event_type`` (its class name unless configured)."""
    info = msgspec.inspect.type_info(event_type)
    return str(info.tag)  # type: ignore[attr-defined]
