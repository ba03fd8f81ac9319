"""How a saga coordinator carries out the effects of committed transitions, and its deadlines.

Effects run only after their transition is committed to the saga topic (see
:mod:`.coordinator`): commands go through the command bus, and a refusal comes back as a
:class:`CommandFailed` signal; asks to a named service are batched per service and turn, their
answers come back as :class:`Replied` or :class:`AskFailed`; deadlines live in a timer heap and
come back as :class:`DeadlinePassed`. A signal from before a resync (an older generation) is
dropped: after a resync every live saga's ``resume`` effects are issued again.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable
from typing import Any

from eventray.platform.errors import ServiceUnavailable
from eventray.platform.sagas.definition import (
    ArmDeadline, Ask, AskFailed, CommandFailed, DeadlinePassed, Effect, Replied, SagaDefinition, SendCommand, Signal,
)

log = logging.getLogger("eventray.sagas")

__all__ = ["EffectRunner"]


class EffectRunner:
    """The effects and deadlines half of :class:`~.coordinator.SagaCoordinatorService` (a mixin:
    the coordinator owns the state these methods use)."""

    definition: SagaDefinition[Any]
    instances: dict[str, Any]
    stats: Any
    _generation: int
    _tasks: set[asyncio.Task[Any]]
    _inbox: list[tuple[str, Signal]]
    _wake: asyncio.Event
    _asks: dict[str, list[tuple[str, Ask]]]
    _services: dict[str, Callable[[list[Any]], Any]]
    _send_command: Callable[[Any], Any]
    _armed: dict[tuple[str, str], int]
    _deadlines: list[tuple[int, int, str, str]]
    _deadline_counter: int
    _clock: Callable[[], int]

    def _execute(self, saga_id: str, effects: tuple[Effect, ...]) -> None:
        for effect in effects:
            if isinstance(effect, SendCommand):
                self._spawn(self._send(saga_id, effect, self._generation))
            elif isinstance(effect, Ask):
                if effect.delay_ms:
                    self._spawn(self._ask_later(saga_id, effect, self._generation))
                else:
                    self._asks[effect.service].append((saga_id, effect))
            elif isinstance(effect, ArmDeadline):
                self._arm(saga_id, effect.name, effect.at_ms)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _signal(self, saga_id: str, signal: Signal, generation: int) -> None:
        if generation == self._generation:  # a reply from before a resync is dropped: resume re-asks
            self._inbox.append((saga_id, signal))
            self._wake.set()

    async def _send(self, saga_id: str, effect: SendCommand, generation: int) -> None:
        if effect.delay_ms:
            await asyncio.sleep(effect.delay_ms / 1000)
        self.stats.commands_sent += 1
        try:
            outcome = await self._send_command(effect.command)
        except Exception as exc:  # noqa: BLE001 - the bus should not raise; treat as retryable
            log.warning("saga %s: sending %s raised %s: %s", saga_id, effect.step, type(exc).__name__, exc)
            self._signal(saga_id, CommandFailed(step=effect.step, attempt=effect.attempt, error_code="UNAVAILABLE",
                                                error_type=type(exc).__name__, message=str(exc), retryable=True),
                         generation)
            return
        if outcome.error_code is not None:
            self._signal(saga_id, CommandFailed(
                step=effect.step, attempt=effect.attempt, error_code=outcome.error_code,
                error_type=outcome.error_type or "", message=outcome.error_message or "", retryable=outcome.retryable,
            ), generation)

    async def _ask_later(self, saga_id: str, effect: Ask, generation: int) -> None:
        await asyncio.sleep(effect.delay_ms / 1000)
        if generation == self._generation:
            self._asks[effect.service].append((saga_id, effect))
            self._flush_asks()

    def _flush_asks(self) -> None:
        for service, asks in list(self._asks.items()):
            if asks:
                self._asks[service] = []
                self.stats.asks += len(asks)
                self._spawn(self._ask(service, asks, self._generation))

    async def _ask(self, service: str, asks: list[tuple[str, Ask]], generation: int) -> None:
        call = self._services.get(service)
        try:
            if call is None:
                raise ServiceUnavailable(f"no service {service!r} is configured for saga {self.definition.name}")
            answers = await call([a.request for _, a in asks])
        except Exception as exc:  # noqa: BLE001 - every ask of the batch fails, retryably
            log.warning("saga service %s failed for %d asks: %s: %s", service, len(asks), type(exc).__name__, exc)
            for saga_id, a in asks:
                self._signal(saga_id, AskFailed(step=a.step, attempt=a.attempt, message=f"{type(exc).__name__}: {exc}"),
                             generation)
            return
        for (saga_id, a), value in zip(asks, answers):
            self._signal(saga_id, Replied(step=a.step, attempt=a.attempt, value=value), generation)

    # ------------------------------------------------------------------ deadlines

    def _arm(self, saga_id: str, name: str, at_ms: int) -> None:
        key = (saga_id, name)
        if self._armed.get(key) == at_ms:
            return
        self._armed[key] = at_ms
        self._deadline_counter += 1
        first = self._deadlines[0][0] if self._deadlines else None
        heapq.heappush(self._deadlines, (at_ms, self._deadline_counter, saga_id, name))
        if first is None:
            self._spawn(self._timer(self._generation))
        elif at_ms < first:
            self._spawn(self._timer(self._generation))

    async def _timer(self, generation: int) -> None:
        while self._deadlines and generation == self._generation:
            at_ms, _, saga_id, name = self._deadlines[0]
            delay = (at_ms - self._clock()) / 1000
            if delay > 0:
                await asyncio.sleep(min(delay, 0.5))
                continue
            heapq.heappop(self._deadlines)
            if self._armed.get((saga_id, name)) != at_ms:
                continue  # moved or superseded
            del self._armed[(saga_id, name)]
            inst = self.instances.get(saga_id)
            if inst is not None and not inst.terminal:
                self._signal(saga_id, DeadlinePassed(name=name), generation)
