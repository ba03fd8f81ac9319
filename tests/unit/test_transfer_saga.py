"""Given/when/then for the TransferMoney saga: a pure state machine, no services."""

from __future__ import annotations

import pytest

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
from eventray.platform.domain import InvalidCommand
from eventray.platform.sagas import (
    ArmDeadline, Ask, AskFailed, CommandFailed, DeadlinePassed, LogEvent, Replied, SendCommand,
)
from eventray.platform.sagas.testing import saga_scenario
from eventray.platform.testing import ScenarioFailed
from eventray.sagas.transfer_money import TransferMoney, TransferPolicy, TransferRequest

T, A, B = "t-1", "acct-a", "acct-b"
NOW = 1_000_000
POLICY = TransferPolicy(fraud_threshold=0.5, step_timeout_ms=1_000, overall_timeout_ms=10_000, max_attempts=3,
                        compensation_max_attempts=4, backoff_base_ms=100, backoff_max_ms=1_000)
REQ = TransferRequest(transfer_id=T, from_account=A, to_account=B, amount=30, currency="EUR")
DEBITED = LogEvent(aggregate_id=A, event=TransferDebited(transfer_id=T, amount=30, balance_after=70, counterparty=B))
CREDITED = LogEvent(aggregate_id=B, event=TransferCredited(transfer_id=T, amount=30, balance_after=30, counterparty=A))
CREDIT_VOIDED = LogEvent(aggregate_id=B, event=TransferCreditVoided(transfer_id=T))
REFUNDED = LogEvent(aggregate_id=A, event=TransferRefunded(transfer_id=T, amount=30, balance_after=100,
                                                          counterparty=B))
DEBIT_VOIDED = LogEvent(aggregate_id=A, event=TransferDebitVoided(transfer_id=T))
LOW = Replied(step="score", attempt=1, value=0.1)


def saga():
    return saga_scenario(TransferMoney(POLICY), now_ms=NOW)


def failed(step: str, attempt: int = 1, *, retryable: bool, error_type: str = "AccountFrozenError"):
    return CommandFailed(step=step, attempt=attempt, error_code="X", error_type=error_type, message="no",
                         retryable=retryable)


def test_start_debits_the_source_with_a_deterministic_command_id() -> None:
    decision = TransferMoney(POLICY).start(REQ, NOW)
    assert decision.state.status == "debiting"
    send, step_deadline, overall = decision.effects
    assert isinstance(send, SendCommand) and isinstance(send.command, DebitForTransfer)
    assert send.command.command_id == f"{T}:debit:1" and send.command.aggregate_id == A
    assert (send.command.amount, send.command.counterparty, send.command.transfer_id) == (30, B, T)
    assert step_deadline == ArmDeadline(name="step", at_ms=NOW + 1_000)
    assert overall == ArmDeadline(name="overall", at_ms=NOW + 10_000)


@pytest.mark.parametrize("bad", [
    TransferRequest(transfer_id=T, from_account=A, to_account=A, amount=1, currency="EUR"),
    TransferRequest(transfer_id=T, from_account=A, to_account=B, amount=0, currency="EUR"),
    TransferRequest(transfer_id="", from_account=A, to_account=B, amount=1, currency="EUR"),
])
def test_start_refuses_a_request_that_is_no_transfer(bad) -> None:
    with pytest.raises(InvalidCommand):
        TransferMoney(POLICY).start(bad, NOW)


def test_happy_path_debit_score_credit_complete() -> None:
    d = saga().given(REQ).when(DEBITED).then(status="scoring", effects=[Ask, ArmDeadline])
    assert d.effects[0].service == "fraud" and d.effects[0].request.amount == 30
    d = saga().given(REQ, DEBITED).when(LOW).then(status="crediting", score=0.1, effects=[SendCommand, ArmDeadline])
    assert isinstance(d.effects[0].command, CreditForTransfer) and d.effects[0].command.command_id == f"{T}:credit:1"
    d = saga().given(REQ, DEBITED, LOW).when(CREDITED).then(status="completed", effects=[])
    assert [s.step for s in d.state.steps if s.result == "ok"] == ["debit", "score", "credit"]


def test_refused_debit_ends_compensated_with_nothing_to_undo() -> None:
    saga().given(REQ).when(failed("debit", retryable=False, error_type="InsufficientFunds")).then(
        status="compensated", effects=[], reason="debit refused: InsufficientFunds: no")


def test_retryable_debit_failure_retries_with_a_new_attempt_and_backoff() -> None:
    d = saga().given(REQ).when(failed("debit", retryable=True)).then(status="debiting", attempt=2)
    send = d.effects[0]
    assert send.command.command_id == f"{T}:debit:2" and send.delay_ms == 100
    d = saga().given(REQ, failed("debit", retryable=True)).when(failed("debit", 2, retryable=True)).then(attempt=3)
    assert d.effects[0].delay_ms == 200


def test_debit_giving_up_compensates_because_the_debit_may_have_happened() -> None:
    s = saga().given(REQ, failed("debit", 1, retryable=True), failed("debit", 2, retryable=True))
    d = s.when(failed("debit", 3, retryable=True)).then(status="refunding")
    assert isinstance(d.effects[0].command, RefundTransfer) and d.effects[0].command.command_id == f"{T}:refund:1"


def test_stale_replies_and_duplicate_events_are_ignored() -> None:
    saga().given(REQ, failed("debit", 1, retryable=True)).when(failed("debit", 1, retryable=True)).ignored()
    saga().given(REQ, DEBITED).when(DEBITED).ignored()
    saga().given(REQ, DEBITED, LOW, CREDITED).when(CREDITED).ignored()
    saga().given(REQ).when(Replied(step="score", attempt=1, value=0.0)).ignored()
    other = LogEvent(aggregate_id=B, event=TransferDebited(transfer_id=T, amount=30, balance_after=0, counterparty=A))
    saga().given(REQ).when(other).ignored()  # a debit of the wrong account is not this saga's debit


def test_fraud_score_above_threshold_refunds() -> None:
    d = saga().given(REQ, DEBITED).when(Replied(step="score", attempt=1, value=0.9)).then(status="refunding",
                                                                                            score=0.9)
    assert "fraud" in d.state.reason
    saga().given(REQ, DEBITED, Replied(step="score", attempt=1, value=0.9)).when(REFUNDED).then(status="compensated")


def test_scorer_unavailable_retries_then_fails_closed() -> None:
    down = lambda n: AskFailed(step="score", attempt=n, message="model down")  # noqa: E731
    saga().given(REQ, DEBITED).when(down(1)).then(status="scoring", attempt=2)
    saga().given(REQ, DEBITED, down(1), down(2)).when(down(3)).then(status="refunding")


def test_refused_credit_refunds_the_source() -> None:
    s = saga().given(REQ, DEBITED, LOW)
    d = s.when(failed("credit", retryable=False, error_type="AccountClosedError")).then(status="refunding")
    assert isinstance(d.effects[0].command, RefundTransfer) and d.effects[0].command.aggregate_id == A
    saga().given(REQ, DEBITED, LOW, failed("credit", retryable=False)).when(REFUNDED).then(status="compensated")


def test_credit_that_does_not_land_is_voided_then_refunded() -> None:
    s = saga().given(REQ, DEBITED, LOW)
    d = s.when(DeadlinePassed(name="overall"), at_ms=NOW + 10_000).then(status="voiding_credit")
    assert isinstance(d.effects[0].command, VoidTransferCredit)
    saga().given(REQ, DEBITED, LOW, (DeadlinePassed(name="overall"), NOW + 10_000)).when(CREDIT_VOIDED).then(
        status="refunding")
    # ... unless the credit had landed: then the transfer completes
    saga().given(REQ, DEBITED, LOW, (DeadlinePassed(name="overall"), NOW + 10_000)).when(CREDITED).then(
        status="completed")


def test_deadline_before_its_time_is_ignored_and_step_deadline_retries() -> None:
    saga().given(REQ).when(DeadlinePassed(name="overall"), at_ms=NOW + 9_999).ignored()
    saga().given(REQ).when(DeadlinePassed(name="step"), at_ms=NOW + 999).ignored()
    saga().given(REQ).when(DeadlinePassed(name="step"), at_ms=NOW + 1_000).then(status="debiting", attempt=2)


def test_overall_deadline_while_debiting_compensates_via_refund_or_void() -> None:
    saga().given(REQ).when(DeadlinePassed(name="overall"), at_ms=NOW + 10_000).then(status="refunding")
    saga().given(REQ, (DeadlinePassed(name="overall"), NOW + 10_000)).when(DEBIT_VOIDED).then(status="compensated")
    # the late debit event while refunding changes nothing: the refund settles it
    saga().given(REQ, (DeadlinePassed(name="overall"), NOW + 10_000)).when(DEBITED).ignored()


def test_compensation_that_cannot_apply_needs_attention() -> None:
    s = saga().given(REQ, DEBITED, LOW, failed("credit", retryable=False))
    d = s.when(failed("refund", retryable=False, error_type="AccountClosedError")).then(
        status="failed_needs_attention")
    assert "refund failed" in d.state.reason
    # retryable compensation failures are retried up to compensation_max_attempts, then need attention
    signals = [failed("refund", n, retryable=True) for n in (1, 2, 3)]
    s = saga().given(REQ, DEBITED, LOW, failed("credit", retryable=False), *signals)
    s.when(failed("refund", 4, retryable=True)).then(status="failed_needs_attention")


def test_terminal_sagas_ignore_everything() -> None:
    done = saga().given(REQ, DEBITED, LOW, CREDITED)
    for signal in (DEBITED, REFUNDED, DeadlinePassed(name="overall"), failed("credit", retryable=True)):
        done.when(signal, at_ms=NOW + 10**9).ignored()


def test_resume_resends_the_current_step_and_rearms_deadlines() -> None:
    state = saga().given(REQ, DEBITED, LOW, failed("credit", retryable=True)).state
    effects = TransferMoney(POLICY).resume(state, NOW + 5)
    send, step_deadline, overall = effects
    assert send.command.command_id == f"{T}:credit:2" and send.delay_ms == 0
    assert step_deadline.name == "step" and overall == ArmDeadline(name="overall", at_ms=NOW + 10_000)
    assert TransferMoney(POLICY).resume(saga().given(REQ, DEBITED, LOW, CREDITED).state, NOW) == ()


def test_every_path_ends_terminal() -> None:
    """Walk every signal sequence up to a depth: no path gets stuck in a non-terminal status
    once the deadlines and attempt limits run out."""
    d = TransferMoney(POLICY)
    signals = [DEBITED, CREDITED, CREDIT_VOIDED, REFUNDED, DEBIT_VOIDED, LOW, Replied(step="score", attempt=1, value=1),
               DeadlinePassed(name="overall")]
    seen = 0
    frontier = [d.start(REQ, NOW).state]
    for _ in range(5):
        nxt = []
        for state in frontier:
            for sig in signals:
                out = d.react(state, sig, NOW + 20_000)
                if out is not None:
                    nxt.append(out.state)
                    seen += 1
            # a failure of the current attempt, whatever the step
            for retryable in (True, False):
                out = d.react(state, failed(state.step, state.attempt, retryable=retryable), NOW + 20_000)
                if out is not None:
                    nxt.append(out.state)
        frontier = nxt
    assert seen > 20
    # from any state, repeated permanent failures drive it to a terminal status
    for state in frontier:
        for _ in range(10):
            if d.is_terminal(state):
                break
            out = d.react(state, failed(state.step, state.attempt, retryable=False), NOW + 20_000)
            state = out.state if out else state
        assert d.is_terminal(state), state.status


def test_scenario_reports_a_wrong_expectation() -> None:
    with pytest.raises(ScenarioFailed, match="state.status"):
        saga().given(REQ).when(DEBITED).then(status="completed")
