"""Given/when/then scenarios for pure aggregates.

    scenario(USER).given(UserRegistered(...)).when(ChangeEmail(...)).then(EmailChanged(...))
    scenario(ACCOUNT).given(...).when(Withdraw(...)).raises(InsufficientFunds)

A failing ``then`` names the first event that differed, field by field.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventray.platform.domain import AggregateType, Command, Event


class ScenarioFailed(AssertionError):
    """A given/when/then expectation was not met."""


class Scenario:
    """A given/when/then builder over one aggregate type."""

    def __init__(self, aggregate: AggregateType[Any]) -> None:
        self._aggregate = aggregate
        self._given: tuple[Event, ...] = ()
        self._command: Command | None = None

    def given(self, *events: Event) -> Scenario:
        """The events already in the aggregate's history."""
        self._given = events
        return self

    def when(self, command: Command) -> Scenario:
        """The command under test."""
        if not self._aggregate.handles(command):
            raise ScenarioFailed(f"{self._aggregate.name} does not handle {type(command).__name__}")
        self._command = command
        return self

    def _decide(self) -> tuple[Event, ...]:
        if self._command is None:
            raise ScenarioFailed("call .when(command) before .then() or .raises()")
        state = self._aggregate.fold(self._given)
        return tuple(self._aggregate.decide(state, self._command))

    def then(self, *expected: Event) -> Any:
        """Assert the command emits exactly ``expected``; return the state after them."""
        actual = self._decide()
        for index, (want, got) in enumerate(zip(expected, actual)):
            if want != got:
                raise ScenarioFailed(f"event #{index} differs: {_diff(want, got)}")
        if len(actual) != len(expected):
            raise ScenarioFailed(
                f"expected {len(expected)} event(s), got {len(actual)}: "
                f"{[type(e).__name__ for e in actual]}"
            )
        return self._aggregate.fold(actual, self._aggregate.fold(self._given))

    def raises(self, error: type[BaseException]) -> BaseException:
        """Assert the command is refused with ``error`` (or a subclass); return it."""
        try:
            actual = self._decide()
        except error as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - reported as the wrong error
            raise ScenarioFailed(
                f"expected {error.__name__}, got {type(exc).__name__}: {exc}"
            ) from exc
        raise ScenarioFailed(
            f"expected {error.__name__}, but the command emitted "
            f"{[type(e).__name__ for e in actual]}"
        )


def _diff(want: Event, got: Event) -> str:
    if type(want) is not type(got):
        return f"expected {type(want).__name__}, got {type(got).__name__}"
    fields = [
        f"{name}: expected {getattr(want, name)!r}, got {getattr(got, name)!r}"
        for name in want.__struct_fields__
        if getattr(want, name) != getattr(got, name)
    ]
    return f"{type(want).__name__} " + "; ".join(fields)


def scenario(aggregate: AggregateType[Any]) -> Scenario:
    """Start a given/when/then scenario for ``aggregate``."""
    return Scenario(aggregate)


def to_builtins(value: Any) -> Any:
    """Plain-data view of a Struct, handy in assertions."""
    return msgspec.to_builtins(value)
