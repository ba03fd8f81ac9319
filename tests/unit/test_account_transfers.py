"""Given/when/then for the Account aggregate's transfer-aware commands."""

from __future__ import annotations

import pytest

from eventray.aggregates.account import (
    ACCOUNT,
    TRANSFER_MEMORY,
    AccountClosed,
    AccountClosedError,
    AccountFrozen,
    AccountFrozenError,
    AccountOpened,
    CreditForTransfer,
    CurrencyMismatch,
    DebitForTransfer,
    InsufficientFunds,
    InvalidAmount,
    MoneyDeposited,
    MoneyWithdrawn,
    RefundTransfer,
    SameAccountTransfer,
    TransferCredited,
    TransferCreditVoided,
    TransferDebited,
    TransferDebitVoided,
    TransferRefunded,
    TransferVoided,
    VoidTransferCredit,
)
from eventray.platform.errors import InvalidCommand, NotFound
from eventray.platform.testing import scenario

SRC, DST, T = "acct-src", "acct-dst", "t-1"
OPENED = AccountOpened(owner_id="u1", currency="EUR")
FUNDED = MoneyDeposited(amount=100, balance_after=100)
DEBITED = TransferDebited(transfer_id=T, amount=30, balance_after=70, counterparty=DST)
CREDITED = TransferCredited(transfer_id=T, amount=30, balance_after=130, counterparty=SRC)


def debit(amount: int = 30, currency: str = "EUR", tid: str = T) -> DebitForTransfer:
    return DebitForTransfer(aggregate_id=SRC, transfer_id=tid, amount=amount, currency=currency, counterparty=DST)


def credit(amount: int = 30, currency: str = "EUR", tid: str = T) -> CreditForTransfer:
    return CreditForTransfer(aggregate_id=DST, transfer_id=tid, amount=amount, currency=currency, counterparty=SRC)


def refund(amount: int = 30) -> RefundTransfer:
    return RefundTransfer(aggregate_id=SRC, transfer_id=T, amount=amount, counterparty=DST, reason="credit refused")


def void() -> VoidTransferCredit:
    return VoidTransferCredit(aggregate_id=DST, transfer_id=T)


def test_debit_moves_money_and_remembers_the_transfer() -> None:
    state = scenario(ACCOUNT).given(OPENED, FUNDED).when(debit()).then(DEBITED)
    assert state.balance == 70 and state.transfers == {T: "debited"}


def test_repeated_debit_with_a_new_command_id_is_a_no_op() -> None:
    scenario(ACCOUNT).given(OPENED, FUNDED, DEBITED).when(debit()).then()


def test_debit_overdraw_frozen_closed_missing_currency() -> None:
    scenario(ACCOUNT).given(OPENED, FUNDED).when(debit(amount=101)).raises(InsufficientFunds)
    scenario(ACCOUNT).given(OPENED, FUNDED, AccountFrozen(reason="x")).when(debit()).raises(AccountFrozenError)
    scenario(ACCOUNT).given(OPENED, AccountClosed()).when(debit()).raises(AccountClosedError)
    scenario(ACCOUNT).given().when(debit()).raises(NotFound)
    scenario(ACCOUNT).given(OPENED, FUNDED).when(debit(currency="USD")).raises(CurrencyMismatch)
    scenario(ACCOUNT).given(OPENED, FUNDED).when(debit(amount=0)).raises(InvalidAmount)


def test_transfer_to_the_same_account_and_bad_ids_are_refused() -> None:
    same = DebitForTransfer(aggregate_id=SRC, transfer_id=T, amount=1, currency="EUR", counterparty=SRC)
    scenario(ACCOUNT).given(OPENED, FUNDED).when(same).raises(SameAccountTransfer)
    scenario(ACCOUNT).given(OPENED, FUNDED).when(debit(tid="has space")).raises(InvalidCommand)
    scenario(ACCOUNT).given(OPENED, FUNDED).when(debit(tid="")).raises(InvalidCommand)


def test_credit_and_its_idempotency() -> None:
    state = scenario(ACCOUNT).given(OPENED, FUNDED).when(credit()).then(CREDITED)
    assert state.balance == 130 and state.transfers == {T: "credited"}
    scenario(ACCOUNT).given(OPENED, FUNDED, CREDITED).when(credit()).then()


def test_credit_to_a_frozen_or_closed_target_is_refused() -> None:
    scenario(ACCOUNT).given(OPENED, AccountFrozen(reason="x")).when(credit()).raises(AccountFrozenError)
    scenario(ACCOUNT).given(OPENED, AccountClosed()).when(credit()).raises(AccountClosedError)
    scenario(ACCOUNT).given(OPENED).when(credit(currency="GBP")).raises(CurrencyMismatch)


def test_refund_after_a_debit_gives_the_money_back_once() -> None:
    refunded = TransferRefunded(transfer_id=T, amount=30, balance_after=100, counterparty=DST,
                                reason="credit refused")
    state = scenario(ACCOUNT).given(OPENED, FUNDED, DEBITED).when(refund()).then(refunded)
    assert state.balance == 100 and state.transfers[T] == "refunded"
    scenario(ACCOUNT).given(OPENED, FUNDED, DEBITED, refunded).when(refund()).then()
    # and a late debit retry cannot take it again
    scenario(ACCOUNT).given(OPENED, FUNDED, DEBITED, refunded).when(debit()).then()


def test_refund_to_a_frozen_source_is_allowed() -> None:
    frozen = AccountFrozen(reason="x")
    scenario(ACCOUNT).given(OPENED, FUNDED, DEBITED, frozen).when(refund()).then(
        TransferRefunded(transfer_id=T, amount=30, balance_after=100, counterparty=DST, reason="credit refused"))


def test_refund_before_any_debit_voids_it_and_a_late_debit_is_refused() -> None:
    state = scenario(ACCOUNT).given(OPENED, FUNDED).when(refund()).then(TransferDebitVoided(transfer_id=T))
    assert state.balance == 100
    scenario(ACCOUNT).given(OPENED, FUNDED, TransferDebitVoided(transfer_id=T)).when(debit()).raises(TransferVoided)
    scenario(ACCOUNT).given(OPENED, FUNDED, TransferDebitVoided(transfer_id=T)).when(refund()).then()


def test_refund_to_a_closed_source_is_refused_once_money_left_it() -> None:
    emptied = MoneyWithdrawn(amount=70, balance_after=0)
    scenario(ACCOUNT).given(OPENED, FUNDED, DEBITED, emptied, AccountClosed()).when(refund()).raises(
        AccountClosedError)


def test_refund_of_a_debit_that_never_happened_voids_it_on_a_closed_source() -> None:
    # the saga refunds when it could not learn a debit's outcome; a closed source was never debited
    scenario(ACCOUNT).given(OPENED, AccountClosed()).when(refund()).then(TransferDebitVoided(transfer_id=T))
    scenario(ACCOUNT).given(OPENED, AccountClosed(), TransferDebitVoided(transfer_id=T)).when(refund()).then()


def test_void_credit_before_and_after_the_credit() -> None:
    scenario(ACCOUNT).given(OPENED).when(void()).then(TransferCreditVoided(transfer_id=T))
    scenario(ACCOUNT).given(OPENED, CREDITED).when(void()).then()  # credited already: it stands
    scenario(ACCOUNT).given(OPENED, TransferCreditVoided(transfer_id=T)).when(credit()).raises(TransferVoided)
    # a closed account records the void too (no money moves)
    scenario(ACCOUNT).given(OPENED, AccountClosed()).when(void()).then(TransferCreditVoided(transfer_id=T))
    scenario(ACCOUNT).given().when(void()).raises(NotFound)


def test_transfer_memory_is_bounded_oldest_first() -> None:
    events = [OPENED, MoneyDeposited(amount=10**9, balance_after=10**9)]
    balance = 10**9
    for i in range(TRANSFER_MEMORY + 5):
        balance -= 1
        events.append(TransferDebited(transfer_id=f"t{i}", amount=1, balance_after=balance, counterparty=DST))
    state = ACCOUNT.fold(events)
    assert len(state.transfers) == TRANSFER_MEMORY
    assert "t0" not in state.transfers and f"t{TRANSFER_MEMORY + 4}" in state.transfers


@pytest.mark.parametrize("order", ["debit-first", "refund-first"])
def test_money_is_conserved_whatever_the_order(order: str) -> None:
    """A debit and its compensation, in either order, leave the balance where it started."""
    state = ACCOUNT.fold([OPENED, FUNDED])
    commands = [debit(), refund()] if order == "debit-first" else [refund(), debit()]
    for command in commands:
        try:
            events = ACCOUNT.decide(state, command)
        except TransferVoided:
            continue
        state = ACCOUNT.fold(events, state)
    assert state.balance == 100
