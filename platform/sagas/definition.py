"""What a saga definition is: a pure state machine over signals, emitting effects.

A saga (process manager) definition is a plain class with no I/O. The coordinator feeds it
*signals* and carries out the *effects* it returns:

* :class:`LogEvent` - a committed domain event from the event log that belongs to the saga;
* :class:`CommandFailed` - a command the saga sent was refused (the log has no event for it);
* :class:`Replied` / :class:`AskFailed` - the answer of a service the saga asked (a model);
* :class:`DeadlinePassed` - a deadline the saga armed has passed.

Effects are :class:`SendCommand` (through the command bus, with the deterministic
``command_id`` the definition chose: saga id + step + attempt), :class:`Ask` (a call to a named
service) and :class:`ArmDeadline`. They run after the transition is committed to the saga topic,
so they may run more than once (after a crash); commands are idempotent by ``command_id`` and
the aggregates' own checks, asks are side-effect free.

A transition is a :class:`Decision`: the new state and its effects. ``react`` returns ``None``
for a signal that does not change the state (a stale or duplicate one): nothing is recorded.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from eventray.platform.domain import Command, Event

__all__ = [
    "ArmDeadline", "Ask", "AskFailed", "CommandFailed", "Decision", "DeadlinePassed", "Effect", "LogEvent",
    "Replied", "SagaDefinition", "SendCommand", "Signal", "command_id",
]

S = TypeVar("S")


def command_id(saga_id: str, step: str, attempt: int) -> str:
    """The deterministic ``command_id`` of a saga step's attempt: ``<saga id>:<step>:<attempt>``."""
    return f"{saga_id}:{step}:{attempt}"


# --- effects ---------------------------------------------------------------------------------


class Effect(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Something the coordinator does after a transition commits."""


class SendCommand(Effect, frozen=True, kw_only=True):
    """Send ``command`` through the command bus, ``delay_ms`` from now (a retry's backoff)."""

    step: str
    attempt: int
    command: Any
    delay_ms: int = 0


class Ask(Effect, frozen=True, kw_only=True):
    """Ask the named ``service`` (e.g. ``"fraud"``) about ``request``; the answer comes back as a signal."""

    step: str
    attempt: int
    service: str
    request: Any
    delay_ms: int = 0


class ArmDeadline(Effect, frozen=True, kw_only=True):
    """Signal :class:`DeadlinePassed` ``name`` at ``at_ms`` (epoch ms). Re-arming a name moves it."""

    name: str
    at_ms: int


# --- signals ---------------------------------------------------------------------------------


class Signal(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """An input of a saga."""


class LogEvent(Signal, frozen=True, kw_only=True):
    """A committed event of ``aggregate_id`` read at ``partition``/``offset`` of the event topic."""

    aggregate_id: str
    event: Any
    partition: int = -1
    offset: int = -1


class CommandFailed(Signal, frozen=True, kw_only=True):
    """The command of ``step`` attempt ``attempt`` was refused with a typed error."""

    step: str
    attempt: int
    error_code: str
    error_type: str
    message: str
    retryable: bool


class Replied(Signal, frozen=True, kw_only=True):
    """The service asked at ``step``/``attempt`` answered ``value``."""

    step: str
    attempt: int
    value: Any


class AskFailed(Signal, frozen=True, kw_only=True):
    """The service asked at ``step``/``attempt`` failed."""

    step: str
    attempt: int
    message: str
    retryable: bool = True


class DeadlinePassed(Signal, frozen=True, kw_only=True):
    """The deadline ``name`` armed by the saga has passed."""

    name: str


class Decision(msgspec.Struct, Generic[S], frozen=True):
    """A transition: the saga's new state, the effects to carry out, and why (for the audit trail)."""

    state: S
    effects: tuple[Effect, ...] = ()
    why: str = ""


class SagaDefinition(Generic[S]):
    """Base of saga definitions. Subclasses set ``name``, ``state_type``, ``request_type`` and
    implement the methods below; all of them are pure."""

    name: ClassVar[str]
    state_type: ClassVar[type]
    request_type: ClassVar[type]
    #: the event types this saga reacts to; the coordinator skips every other event cheaply
    event_types: ClassVar[tuple[type[Event], ...]] = ()

    def saga_id(self, request: Any) -> str:
        """The id of the saga that ``request`` starts (its idempotency key)."""
        raise NotImplementedError

    def start(self, request: Any, now_ms: int) -> Decision[S]:
        """The first transition."""
        raise NotImplementedError

    def correlate(self, event: Event) -> str | None:
        """The id of the saga ``event`` belongs to, or ``None``."""
        raise NotImplementedError

    def start_request(self, aggregate_id: str, event: Event, *, correlation_id: str | None = None,
                      subject: str | None = None) -> Any | None:
        """The start request that a committed event of ``aggregate_id`` implies, or ``None`` (the
        default: the saga starts only by request).

        The coordinator starts the saga ``saga_id(request)`` when no instance of it exists, in
        the transaction that consumes the event, so an event starts its saga exactly once.
        The event's type must be in ``event_types``. ``correlation_id`` and ``subject`` are the
        event's (its envelope's). A request ``start`` refuses is logged and skipped.
        """
        return None

    def correlate_record(self, aggregate_id: str, event: Event) -> str | None:
        """The id of the saga the event of ``aggregate_id`` belongs to; by default :meth:`correlate`.

        Override it when the saga id follows from the aggregate, not from a field of the event.
        """
        return self.correlate(event)

    def react(self, state: S, signal: Signal, now_ms: int) -> Decision[S] | None:
        """The transition for ``signal``, or ``None`` when it changes nothing."""
        raise NotImplementedError

    def resume(self, state: S, now_ms: int) -> tuple[Effect, ...]:
        """The effects a non-terminal saga needs after a restart (re-send its step, re-arm deadlines)."""
        raise NotImplementedError

    def is_terminal(self, state: S) -> bool:
        raise NotImplementedError

    def status(self, state: S) -> str:
        raise NotImplementedError

    def index_keys(self, state: S) -> tuple[str, ...]:
        """Keys to list the saga by (the aggregate ids it concerns, say); optional.

        The coordinator indexes every instance under these keys: ``SagaClient.by_key``.
        """
        return ()

    def needs_attention(self, state: S) -> bool:
        """Whether a person must look at this saga (it ended in a state the definition could not
        settle by itself); ``SagaClient.stuck`` lists these first. Optional."""
        return False


def is_command(value: Any) -> bool:
    return isinstance(value, Command)
