"""Given/when/then scenarios for pure saga definitions.

    saga_scenario(TransferMoney()).given(request, LogEvent(...)).when(Replied(...)).then(
        status="crediting", effects=[SendCommand, ArmDeadline])
    saga_scenario(...).given(request).when(stale_signal).ignored()

A failing ``then`` says which field or effect differed.
"""

from __future__ import annotations

from typing import Any

from eventray.platform.sagas.definition import Decision, Effect, SagaDefinition, Signal
from eventray.platform.testing import ScenarioFailed

__all__ = ["SagaScenario", "saga_scenario"]


class SagaScenario:
    """Feeds a definition a start request and signals, each at a given time (ms)."""

    def __init__(self, definition: SagaDefinition[Any], *, now_ms: int = 1_000_000) -> None:
        self._definition = definition
        self._now = now_ms
        self._state: Any = None
        self._decision: Decision[Any] | None = None
        self._when: tuple[Signal, int] | None = None

    def given(self, request: Any, *signals: Signal | tuple[Signal, int]) -> SagaScenario:
        """Start with ``request``, then apply ``signals`` (``(signal, at_ms)`` to set the time)."""
        d = self._definition
        self._state = d.start(request, self._now).state
        for item in signals:
            signal, at = item if isinstance(item, tuple) else (item, self._now)
            decision = d.react(self._state, signal, at)
            if decision is None:
                raise ScenarioFailed(f"given: {type(signal).__name__} changed nothing in status "
                                     f"{d.status(self._state)!r}")
            self._state = decision.state
        return self

    @property
    def state(self) -> Any:
        return self._state

    def when(self, signal: Signal, *, at_ms: int | None = None) -> SagaScenario:
        self._when = (signal, self._now if at_ms is None else at_ms)
        return self

    def _react(self) -> Decision[Any] | None:
        if self._when is None:
            raise ScenarioFailed("call .when(signal) first")
        signal, at = self._when
        return self._definition.react(self._state, signal, at)

    def then(self, *, effects: list[type[Effect] | Effect] | None = None, **fields: Any) -> Any:
        """Assert the transition's state ``fields`` (e.g. ``status="crediting"``) and, if given, its
        effects (types, or whole effects to compare); return the decision."""
        decision = self._react()
        if decision is None:
            raise ScenarioFailed(f"expected a transition, the signal was ignored in {self._definition.status(self._state)!r}")
        for name, want in fields.items():
            got = getattr(decision.state, name)
            if got != want:
                raise ScenarioFailed(f"state.{name}: expected {want!r}, got {got!r}")
        if effects is not None:
            got_effects = list(decision.effects)
            if len(got_effects) != len(effects):
                raise ScenarioFailed(f"expected {len(effects)} effect(s), got {[type(e).__name__ for e in got_effects]}")
            for i, (want, got) in enumerate(zip(effects, got_effects)):
                ok = isinstance(got, want) if isinstance(want, type) else got == want
                if not ok:
                    raise ScenarioFailed(f"effect #{i}: expected {want!r}, got {got!r}")
        return decision

    def ignored(self) -> None:
        """Assert the signal changes nothing (stale, duplicate or irrelevant)."""
        decision = self._react()
        if decision is not None:
            raise ScenarioFailed(f"expected the signal to be ignored, got a transition: {decision.why}")


def saga_scenario(definition: SagaDefinition[Any], *, now_ms: int = 1_000_000) -> SagaScenario:
    """Start a given/when/then scenario for a saga ``definition``."""
    return SagaScenario(definition, now_ms=now_ms)
