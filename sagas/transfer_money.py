"""TransferMoney: move money between two accounts, with a fraud check and compensation.

Steps (``status`` while the step runs):

1. ``debiting`` - ``DebitForTransfer`` on the source;
2. ``scoring`` - ask the ``fraud`` service for the movement's anomaly score; above
   ``policy.fraud_threshold`` the transfer is refused and compensated;
3. ``crediting`` - ``CreditForTransfer`` on the target;
4. ``completed``.

Compensation runs in reverse: a credit refused (target frozen, closed, missing, other
currency) or a credit that does not land before its deadline is first *voided* on the target
(``voiding_credit``: ``VoidTransferCredit``, after which the credit can never land; if it
already had, the saga completes instead), then the debit is *refunded* on the source
(``refunding``: ``RefundTransfer``, which also voids a debit that never happened).

Terminal statuses: ``completed``, ``compensated`` (with a ``reason``; a transfer refused at the
debit is compensated with nothing to undo) and ``failed_needs_attention`` (a compensation that
could not be applied, e.g. the source was closed meanwhile; ``reason`` says what).

Success is learned from the event log (``TransferDebited``, ``TransferCredited``, ...), never
from a command's reply; refusals come back as :class:`CommandFailed`. Retryable failures and
step deadlines retry the step with a new attempt (``<transfer id>:<step>:<attempt>``) after an
exponential backoff; the account's transfer memory makes a retried debit or credit a no-op.
No lock is held across accounts, so opposite transfers between two accounts cannot deadlock.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from eventray.aggregates.account import (
    CreditForTransfer,
    DebitForTransfer,
    RefundTransfer,
    TransferCredited,
    TransferCreditVoided,
    TransferDebited,
    TransferDebitVoided,
    TransferRefunded,
    VoidTransferCredit,
)
from eventray.platform.domain import Event, InvalidCommand
from eventray.platform.sagas.definition import (
    ArmDeadline,
    Ask,
    AskFailed,
    CommandFailed,
    DeadlinePassed,
    Decision,
    Effect,
    LogEvent,
    Replied,
    SagaDefinition,
    SendCommand,
    Signal,
    command_id,
)

__all__ = [
    "ACTIVE", "MovementToScore", "history_effects", "history_movement", "StepRecord", "TERMINAL", "TransferMoney", "TransferPolicy", "TransferRequest",
    "TransferState",
]

TERMINAL = frozenset({"completed", "compensated", "failed_needs_attention"})
ACTIVE = ("debiting", "scoring", "crediting", "voiding_credit", "refunding")
_STEP = {"debiting": "debit", "scoring": "score", "crediting": "credit", "voiding_credit": "void_credit",
         "refunding": "refund"}
_COMPENSATING = frozenset({"voiding_credit", "refunding"})


class TransferRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A requested transfer. ``transfer_id`` is the client's idempotency key."""

    transfer_id: str
    from_account: str
    to_account: str
    amount: int
    currency: str
    subject: str | None = None
    correlation_id: str | None = None


class MovementToScore(msgspec.Struct, frozen=True, kw_only=True):
    """What the fraud step asks the scorer about."""

    transfer_id: str
    from_account: str
    to_account: str
    amount: int
    currency: str
    at_ms: int


class StepRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a transfer's audit trail."""

    step: str
    result: str  #: "started", "ok", "retry", "refused", "timeout", "rejected", ...
    attempt: int
    at_ms: int
    detail: str = ""


class TransferState(msgspec.Struct, frozen=True, kw_only=True):
    """A transfer saga's state (stored, whole, with every transition in the saga topic)."""

    transfer_id: str
    from_account: str
    to_account: str
    amount: int
    currency: str
    status: str
    step: str
    attempt: int
    requested_at_ms: int
    updated_at_ms: int
    deadline_ms: int
    step_deadline_ms: int | None = None
    score: float | None = None
    reason: str | None = None
    steps: tuple[StepRecord, ...] = ()
    subject: str | None = None
    correlation_id: str | None = None


class TransferPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Timeouts, retries and the fraud check: what the app's factory reads from its settings.

    ``scorer`` names the fraud service the coordinator builds for the ``score`` step:
    ``"anomaly"`` (the ML anomaly model) or ``"rule"`` (``amount / rule_limit``); a movement
    scoring above ``fraud_threshold`` is refused.
    """

    fraud_threshold: float = 0.0
    scorer: str = "anomaly"
    rule_limit: int = 10**9
    step_timeout_ms: int = 5_000
    overall_timeout_ms: int = 30_000
    max_attempts: int = 6
    compensation_max_attempts: int = 30
    backoff_base_ms: int = 50
    backoff_max_ms: int = 2_000


def _backoff(policy: TransferPolicy, attempt: int) -> int:
    """Delay before ``attempt`` (2, 3, ...): base * 2^(attempt-2), capped."""
    return min(policy.backoff_max_ms, policy.backoff_base_ms * 2 ** max(0, attempt - 2))


class TransferMoney(SagaDefinition[TransferState]):
    """The transfer saga. Pure: ``policy`` is its only configuration."""

    name = "TransferMoney"
    state_type = TransferState
    request_type = TransferRequest
    event_types: ClassVar[tuple[type[Event], ...]] = (
        TransferDebited, TransferCredited, TransferRefunded, TransferDebitVoided, TransferCreditVoided,
    )

    def __init__(self, policy: TransferPolicy | None = None) -> None:
        self.policy = policy or TransferPolicy()

    # --- identity ----------------------------------------------------------------------------

    def saga_id(self, request: TransferRequest) -> str:
        return request.transfer_id

    def correlate(self, event: Event) -> str | None:
        return getattr(event, "transfer_id", None)

    def is_terminal(self, state: TransferState) -> bool:
        return state.status in TERMINAL

    def status(self, state: TransferState) -> str:
        return state.status

    def index_keys(self, state: TransferState) -> tuple[str, ...]:
        return (state.from_account, state.to_account)

    def needs_attention(self, state: TransferState) -> bool:
        return state.status == "failed_needs_attention"

    # --- start -------------------------------------------------------------------------------

    def start(self, request: TransferRequest, now_ms: int) -> Decision[TransferState]:
        """Validate the request and start debiting.

        Raises:
            InvalidCommand: the request cannot be a transfer (same account, bad amount).
        """
        if request.from_account == request.to_account:
            raise InvalidCommand("a transfer needs two different accounts", field="to_account")
        if type(request.amount) is not int or request.amount <= 0:
            raise InvalidCommand("amount must be a positive integer of minor units", field="amount")
        if not request.transfer_id or " " in request.transfer_id:
            raise InvalidCommand("transfer_id must be non-empty without spaces", field="transfer_id")
        state = TransferState(
            transfer_id=request.transfer_id, from_account=request.from_account, to_account=request.to_account,
            amount=request.amount, currency=request.currency, status="debiting", step="debit", attempt=1,
            requested_at_ms=now_ms, updated_at_ms=now_ms, deadline_ms=now_ms + self.policy.overall_timeout_ms,
            step_deadline_ms=now_ms + self.policy.step_timeout_ms,
            steps=(StepRecord(step="debit", result="started", attempt=1, at_ms=now_ms),),
            subject=request.subject, correlation_id=request.correlation_id,
        )
        return Decision(state, (*self._step_effects(state, 0), ArmDeadline(name="overall", at_ms=state.deadline_ms)),
                        "requested")

    # --- transitions -------------------------------------------------------------------------

    def react(self, state: TransferState, signal: Signal, now_ms: int) -> Decision[TransferState] | None:
        if state.status in TERMINAL:
            return None
        if isinstance(signal, LogEvent):
            return self._on_event(state, signal, now_ms)
        if isinstance(signal, CommandFailed):
            if signal.step != state.step or signal.attempt != state.attempt:
                return None  # an older attempt's late reply
            return self._on_failure(state, signal.retryable, f"{signal.error_type}: {signal.message}", now_ms)
        if isinstance(signal, Replied):
            if state.status != "scoring" or signal.attempt != state.attempt:
                return None
            score = float(signal.value)
            if score > self.policy.fraud_threshold:
                reason = f"fraud check: score {score:.3f} above {self.policy.fraud_threshold:.3f}"
                return self._goto(state, "refunding", now_ms, result="rejected", detail=reason, reason=reason,
                                  score=score)
            return self._goto(state, "crediting", now_ms, result="ok", detail=f"score {score:.3f}", score=score)
        if isinstance(signal, AskFailed):
            if state.status != "scoring" or signal.attempt != state.attempt:
                return None
            return self._on_failure(state, signal.retryable, signal.message, now_ms)
        if isinstance(signal, DeadlinePassed):
            return self._on_deadline(state, signal.name, now_ms)
        return None

    def _on_event(self, state: TransferState, signal: LogEvent, now_ms: int) -> Decision[TransferState] | None:
        event, agg = signal.event, signal.aggregate_id
        status = state.status
        where = f"log {signal.partition}:{signal.offset}"
        if isinstance(event, TransferDebited) and agg == state.from_account:
            if status == "debiting":
                return self._goto(state, "scoring", now_ms, result="ok", detail=where)
            return None  # compensating already: the refund settles it
        if isinstance(event, TransferCredited) and agg == state.to_account:
            if status in ("crediting", "voiding_credit"):
                return self._goto(state, "completed", now_ms, result="ok", detail=where)
            if status == "refunding":  # cannot happen with the account's transfer memory intact
                return self._goto(state, "failed_needs_attention", now_ms, result="conflict", detail=where,
                                  reason="the credit landed while the debit was being refunded")
            return None
        if isinstance(event, TransferCreditVoided) and agg == state.to_account:
            if status == "voiding_credit":
                return self._goto(state, "refunding", now_ms, result="voided", detail=where)
            return None
        if isinstance(event, (TransferRefunded, TransferDebitVoided)) and agg == state.from_account:
            if status == "refunding":
                what = "refunded" if isinstance(event, TransferRefunded) else "debit voided"
                return self._goto(state, "compensated", now_ms, result=what, detail=where)
            return None
        return None

    def _on_failure(self, state: TransferState, retryable: bool, detail: str,
                    now_ms: int) -> Decision[TransferState]:
        status = state.status
        limit = self.policy.compensation_max_attempts if status in _COMPENSATING else self.policy.max_attempts
        if retryable and state.attempt < limit:
            return self._retry(state, now_ms, "retry", detail)
        if status == "debiting":
            if retryable:  # the debit may or may not have happened: compensate, the account knows
                return self._goto(state, "refunding", now_ms, result="gave_up", detail=detail,
                                  reason=f"debit did not complete: {detail}")
            return self._goto(state, "compensated", now_ms, result="refused", detail=detail,
                              reason=f"debit refused: {detail}")
        if status == "scoring":
            return self._goto(state, "refunding", now_ms, result="gave_up", detail=detail,
                              reason=f"fraud check unavailable: {detail}")
        if status == "crediting":
            if retryable:
                return self._goto(state, "voiding_credit", now_ms, result="gave_up", detail=detail,
                                  reason=f"credit did not complete: {detail}")
            return self._goto(state, "refunding", now_ms, result="refused", detail=detail,
                              reason=f"credit refused: {detail}")
        if status == "voiding_credit" and not retryable and detail.startswith("NotFound"):
            return self._goto(state, "refunding", now_ms, result="no_target", detail=detail)
        return self._goto(state, "failed_needs_attention", now_ms, result="failed", detail=detail,
                          reason=f"{_STEP[status]} failed: {detail}")

    def _on_deadline(self, state: TransferState, name: str, now_ms: int) -> Decision[TransferState] | None:
        if name == "overall":
            if now_ms < state.deadline_ms:
                return None
            reason = f"deadline passed in step {state.step}"
            if state.status in ("debiting", "scoring"):
                return self._goto(state, "refunding", now_ms, result="timeout", detail=reason, reason=reason)
            if state.status == "crediting":
                return self._goto(state, "voiding_credit", now_ms, result="timeout", detail=reason, reason=reason)
            return None  # compensating: it goes on, bounded by its attempts
        if name == "step":
            if state.step_deadline_ms is None or now_ms < state.step_deadline_ms:
                return None
            return self._on_failure(state, True, f"step {state.step} attempt {state.attempt} timed out", now_ms)
        return None

    # --- helpers -----------------------------------------------------------------------------

    def _retry(self, state: TransferState, now_ms: int, result: str, detail: str) -> Decision[TransferState]:
        attempt = state.attempt + 1
        delay = _backoff(self.policy, attempt)
        new = msgspec.structs.replace(
            state, attempt=attempt, updated_at_ms=now_ms,
            step_deadline_ms=now_ms + delay + self.policy.step_timeout_ms,
            steps=(*state.steps, StepRecord(step=state.step, result=result, attempt=state.attempt, at_ms=now_ms,
                                            detail=detail)),
        )
        return Decision(new, self._step_effects(new, delay), f"{state.step}: {result}")

    def _goto(self, state: TransferState, status: str, now_ms: int, *, result: str, detail: str = "",
              reason: str | None = None, score: float | None = None) -> Decision[TransferState]:
        record = StepRecord(step=state.step, result=result, attempt=state.attempt, at_ms=now_ms, detail=detail)
        terminal = status in TERMINAL
        step = state.step if terminal else _STEP[status]
        steps = (*state.steps, record)
        if not terminal:
            steps = (*steps, StepRecord(step=step, result="started", attempt=1, at_ms=now_ms))
        new = msgspec.structs.replace(
            state, status=status, step=step, attempt=1 if not terminal else state.attempt, updated_at_ms=now_ms,
            step_deadline_ms=None if terminal else now_ms + self.policy.step_timeout_ms,
            reason=reason if reason is not None else state.reason,
            score=score if score is not None else state.score, steps=steps,
        )
        return Decision(new, () if terminal else self._step_effects(new, 0), f"{state.step} {result} -> {status}")

    def resume(self, state: TransferState, now_ms: int) -> tuple[Effect, ...]:
        if state.status in TERMINAL:
            return ()
        return (*self._step_effects(state, 0), ArmDeadline(name="overall", at_ms=state.deadline_ms))

    def _step_effects(self, s: TransferState, delay_ms: int) -> tuple[Effect, ...]:
        tid, step, attempt = s.transfer_id, s.step, s.attempt
        cid = command_id(tid, step, attempt)
        common: dict[str, Any] = {"command_id": cid, "subject": s.subject, "correlation_id": s.correlation_id or tid}
        action: Effect
        if s.status == "debiting":
            action = SendCommand(step=step, attempt=attempt, delay_ms=delay_ms, command=DebitForTransfer(
                aggregate_id=s.from_account, transfer_id=tid, amount=s.amount, currency=s.currency,
                counterparty=s.to_account, **common))
        elif s.status == "scoring":
            action = Ask(step=step, attempt=attempt, delay_ms=delay_ms, service="fraud", request=MovementToScore(
                transfer_id=tid, from_account=s.from_account, to_account=s.to_account, amount=s.amount,
                currency=s.currency, at_ms=s.requested_at_ms))
        elif s.status == "crediting":
            action = SendCommand(step=step, attempt=attempt, delay_ms=delay_ms, command=CreditForTransfer(
                aggregate_id=s.to_account, transfer_id=tid, amount=s.amount, currency=s.currency,
                counterparty=s.from_account, **common))
        elif s.status == "voiding_credit":
            action = SendCommand(step=step, attempt=attempt, delay_ms=delay_ms, command=VoidTransferCredit(
                aggregate_id=s.to_account, transfer_id=tid, **common))
        else:  # refunding
            action = SendCommand(step=step, attempt=attempt, delay_ms=delay_ms, command=RefundTransfer(
                aggregate_id=s.from_account, transfer_id=tid, amount=s.amount, counterparty=s.to_account,
                reason=(s.reason or "compensation")[:500], **common))
        assert s.step_deadline_ms is not None
        return (action, ArmDeadline(name="step", at_ms=s.step_deadline_ms))


# --- what the saga history checker needs (eventray.platform.sagas.history) --------------------------

_MOVES: dict[type, str] = {TransferDebited: "debit", TransferCredited: "credit", TransferRefunded: "refund",
                           TransferDebitVoided: "debit_void", TransferCreditVoided: "credit_void"}


def history_movement(event: Event) -> tuple[str, str] | None:
    """``(kind, transfer id)`` of an event a transfer's step writes, each at most once; else ``None``."""
    kind = _MOVES.get(type(event))
    return (kind, event.transfer_id) if kind is not None else None  # type: ignore[attr-defined]


def history_effects(transfer_id: str, state: TransferState) -> list[tuple[str, str]]:
    """The movements a transfer that ended in ``state`` wrote exactly once."""
    if state.status == "completed":
        return [("debit", transfer_id), ("credit", transfer_id)]
    if state.status == "compensated" and any(s.result == "refunded" for s in state.steps):
        return [("debit", transfer_id), ("refund", transfer_id)]
    return []
