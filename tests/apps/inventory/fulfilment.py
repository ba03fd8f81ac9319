"""OrderFulfilment: place an order, reserve each of its lines, confirm it; or release and reject.

Statuses: ``placing`` (PlaceOrder) -> ``reserving`` line by line (ReserveStock on each product)
-> ``confirming`` (ConfirmOrder) -> ``completed``. A line refused (OutOfStock, no such product)
or out of attempts turns it to ``releasing``: ReleaseStock on the reserved lines, last first,
then ``rejecting`` (RejectOrder) -> ``compensated``. Success is learned from the log, refusals
from CommandFailed; a step's deadline retries it with a new attempt.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

import eventray

from .domain import (
    ConfirmOrder, OrderConfirmed, OrderPlaced, OrderRejected, PlaceOrder, RejectOrder, ReleaseStock, ReserveStock,
    StockReleased, StockReserved,
)

TERMINAL = frozenset({"completed", "compensated"})


class FulfilRequest(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    customer_id: str
    skus: list[str]
    quantities: list[int]


class FulfilmentState(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    customer_id: str
    skus: list[str]
    quantities: list[int]
    status: str
    line: int = 0  # the line being reserved, or released
    reserved: int = 0  # lines reserved so far (0..line)
    attempt: int = 1
    reason: str | None = None


class FulfilmentPolicy(msgspec.Struct, frozen=True, kw_only=True):
    step_timeout_ms: int = 3_000
    max_attempts: int = 5


class OrderFulfilment(eventray.SagaDefinition[FulfilmentState]):
    name = "OrderFulfilment"
    state_type = FulfilmentState
    request_type = FulfilRequest
    event_types: ClassVar[tuple[type[eventray.Event], ...]] = (
        OrderPlaced, OrderConfirmed, OrderRejected, StockReserved, StockReleased)

    def __init__(self, policy: FulfilmentPolicy | None = None) -> None:
        self.policy = policy or FulfilmentPolicy()

    def saga_id(self, request: FulfilRequest) -> str:
        return request.order_id

    def correlate(self, event: eventray.Event) -> str | None:
        return getattr(event, "order_id", None)

    def is_terminal(self, state: FulfilmentState) -> bool:
        return state.status in TERMINAL

    def status(self, state: FulfilmentState) -> str:
        return state.status

    def index_keys(self, state: FulfilmentState) -> tuple[str, ...]:
        return (state.customer_id, *state.skus)

    def start(self, request: FulfilRequest, now_ms: int) -> eventray.Decision[FulfilmentState]:
        if not request.skus or len(request.skus) != len(request.quantities):
            raise eventray.InvalidCommand("an order needs as many quantities as skus", field="skus")
        state = FulfilmentState(order_id=request.order_id, customer_id=request.customer_id, skus=request.skus,
                                quantities=request.quantities, status="placing")
        return eventray.Decision(state, self._effects(state, now_ms), "requested")

    def react(self, state: FulfilmentState, signal: object, now_ms: int) -> eventray.Decision[FulfilmentState] | None:
        if state.status in TERMINAL:
            return None
        if isinstance(signal, eventray.LogEvent):
            return self._on_event(state, signal.event, signal.aggregate_id, now_ms)
        if isinstance(signal, eventray.CommandFailed):
            if signal.step != self._step(state) or signal.attempt != state.attempt:
                return None
            if signal.retryable and state.attempt < self.policy.max_attempts:
                return self._retry(state, now_ms)
            return self._give_up(state, f"{signal.error_type}: {signal.message}", now_ms)
        if isinstance(signal, eventray.DeadlinePassed):
            if signal.name != f"{self._step(state)}:{state.attempt}":
                return None
            if state.attempt < self.policy.max_attempts:
                return self._retry(state, now_ms)
            return self._give_up(state, f"step {self._step(state)} timed out", now_ms)
        return None

    def _on_event(self, s: FulfilmentState, event: eventray.Event, aggregate_id: str,
                  now_ms: int) -> eventray.Decision[FulfilmentState] | None:
        if isinstance(event, OrderPlaced) and s.status == "placing":
            return self._go(s, now_ms, status="reserving", line=0)
        if isinstance(event, StockReserved) and s.status == "reserving" and aggregate_id == s.skus[s.line]:
            if s.line + 1 < len(s.skus):
                return self._go(s, now_ms, line=s.line + 1, reserved=s.line + 1)
            return self._go(s, now_ms, status="confirming", reserved=len(s.skus))
        if isinstance(event, StockReleased) and s.status == "releasing" and aggregate_id == s.skus[s.line]:
            return self._after_release(s, now_ms)
        if isinstance(event, OrderConfirmed) and s.status == "confirming":
            return self._go(s, now_ms, status="completed")
        if isinstance(event, OrderRejected) and s.status == "rejecting":
            return self._go(s, now_ms, status="compensated")
        return None

    def _give_up(self, s: FulfilmentState, reason: str, now_ms: int) -> eventray.Decision[FulfilmentState]:
        if s.status == "placing":
            return self._go(s, now_ms, status="rejecting", reason=reason)
        if s.status == "reserving":  # release the lines reserved before this one, last first
            if s.reserved == 0:
                return self._go(s, now_ms, status="rejecting", reason=reason)
            return self._go(s, now_ms, status="releasing", line=s.reserved - 1, reason=reason)
        if s.status == "releasing":  # a release that cannot be done: go on with the others
            return self._after_release(s, now_ms)
        return self._retry(s, now_ms)  # confirming / rejecting: keep trying

    def _after_release(self, s: FulfilmentState, now_ms: int) -> eventray.Decision[FulfilmentState]:
        if s.line == 0:
            return self._go(s, now_ms, status="rejecting")
        return self._go(s, now_ms, line=s.line - 1)

    def _go(self, s: FulfilmentState, now_ms: int, **changes: object) -> eventray.Decision[FulfilmentState]:
        new = msgspec.structs.replace(s, attempt=1, **changes)  # type: ignore[arg-type]
        effects = () if new.status in TERMINAL else self._effects(new, now_ms)
        return eventray.Decision(new, effects, f"{s.status} -> {new.status}")

    def _retry(self, s: FulfilmentState, now_ms: int) -> eventray.Decision[FulfilmentState]:
        new = msgspec.structs.replace(s, attempt=s.attempt + 1)
        return eventray.Decision(new, self._effects(new, now_ms), f"{self._step(s)}: retry")

    def resume(self, state: FulfilmentState, now_ms: int) -> tuple[eventray.SendCommand | eventray.ArmDeadline, ...]:
        return () if state.status in TERMINAL else self._effects(state, now_ms)

    def _step(self, s: FulfilmentState) -> str:
        return {"reserving": f"reserve{s.line}", "releasing": f"release{s.line}"}.get(s.status, s.status)

    def _effects(self, s: FulfilmentState, now_ms: int) -> tuple[eventray.SendCommand | eventray.ArmDeadline, ...]:
        step = self._step(s)
        common = {"command_id": eventray.command_id(s.order_id, step, s.attempt), "correlation_id": s.order_id}
        command: eventray.Command
        if s.status == "placing":
            command = PlaceOrder(aggregate_id=s.order_id, customer_id=s.customer_id, skus=s.skus,
                                 quantities=s.quantities, **common)
        elif s.status == "reserving":
            command = ReserveStock(aggregate_id=s.skus[s.line], order_id=s.order_id, quantity=s.quantities[s.line],
                                   **common)
        elif s.status == "releasing":
            command = ReleaseStock(aggregate_id=s.skus[s.line], order_id=s.order_id, **common)
        elif s.status == "confirming":
            command = ConfirmOrder(aggregate_id=s.order_id, **common)
        else:  # rejecting
            command = RejectOrder(aggregate_id=s.order_id, reason=(s.reason or "rejected")[:200], **common)
        return (eventray.SendCommand(step=step, attempt=s.attempt, command=command),
                eventray.ArmDeadline(name=f"{step}:{s.attempt}", at_ms=now_ms + self.policy.step_timeout_ms))
