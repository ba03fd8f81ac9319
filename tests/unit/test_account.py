"""Given/when/then for the Account aggregate: every command and every rule."""

from __future__ import annotations

import pytest

from eventray.aggregates.account import (
    ACCOUNT,
    MAX_AMOUNT,
    MAX_BALANCE,
    MAX_OWNER_ID_LENGTH,
    MAX_REASON_LENGTH,
    AccountClosed,
    AccountClosedError,
    AccountFrozen,
    AccountFrozenError,
    AccountOpened,
    AccountState,
    AccountStatus,
    AccountUnfrozen,
    BalanceLimitExceeded,
    CloseAccount,
    Deposit,
    FreezeAccount,
    InsufficientFunds,
    InvalidAmount,
    InvalidCurrency,
    MoneyDeposited,
    MoneyWithdrawn,
    NonZeroBalance,
    OpenAccount,
    UnfreezeAccount,
    Withdraw,
)
from eventray.platform.errors import AlreadyExists, InvalidCommand, NotFound, RuleViolation
from eventray.platform.testing import scenario

ID = "acct-1"
OPENED = AccountOpened(owner_id="user-1", currency="EUR")
FUNDED = MoneyDeposited(amount=100, balance_after=100)
FROZEN = AccountFrozen(reason="fraud check")
CLOSED = AccountClosed()

BAD_AMOUNTS = [0, -1, -MAX_AMOUNT, MAX_AMOUNT + 1, 10**30, 1.0, 1.5, True, "1", None]


def open_account(owner_id: str = "user-1", currency: str = "EUR") -> OpenAccount:
    return OpenAccount(aggregate_id=ID, owner_id=owner_id, currency=currency)


# --- OpenAccount -----------------------------------------------------------------------------


def test_open() -> None:
    state = scenario(ACCOUNT).when(open_account()).then(OPENED)
    assert state == AccountState(owner_id="user-1", currency="EUR", balance=0)
    assert state.status is AccountStatus.ACTIVE


def test_open_existing_account_already_exists() -> None:
    scenario(ACCOUNT).given(OPENED).when(open_account()).raises(AlreadyExists)


def test_open_closed_account_already_exists() -> None:
    scenario(ACCOUNT).given(OPENED, CLOSED).when(open_account()).raises(AlreadyExists)


@pytest.mark.parametrize("currency", ["USD", "JPY", "XAU"])
def test_open_accepts_currency(currency: str) -> None:
    scenario(ACCOUNT).when(open_account(currency=currency)).then(
        AccountOpened(owner_id="user-1", currency=currency)
    )


@pytest.mark.parametrize(
    "currency", ["", "eur", "Eur", "EU", "EURO", "E1R", " EUR", "EUR\n", "ÉUR", 978, None]
)
def test_open_refuses_invalid_currency(currency: str) -> None:
    err = scenario(ACCOUNT).when(open_account(currency=currency)).raises(InvalidCurrency)
    assert isinstance(err, InvalidCommand)
    assert err.details["field"] == "currency"  # type: ignore[attr-defined]


def test_owner_id_max_length_boundary() -> None:
    owner = "u" * MAX_OWNER_ID_LENGTH
    scenario(ACCOUNT).when(open_account(owner_id=owner)).then(
        AccountOpened(owner_id=owner, currency="EUR")
    )
    scenario(ACCOUNT).when(open_account(owner_id=owner + "u")).raises(InvalidCommand)


@pytest.mark.parametrize("owner_id", ["", " ", "user 1", "user\x00", "üser", 7, None])
def test_open_refuses_invalid_owner_id(owner_id: str) -> None:
    err = scenario(ACCOUNT).when(open_account(owner_id=owner_id)).raises(InvalidCommand)
    assert err.details["field"] == "owner_id"  # type: ignore[attr-defined]


# --- Deposit ---------------------------------------------------------------------------------


def test_deposit() -> None:
    state = scenario(ACCOUNT).given(OPENED).when(Deposit(aggregate_id=ID, amount=100)).then(FUNDED)
    assert state.balance == 100


def test_deposit_carries_balance_after() -> None:
    scenario(ACCOUNT).given(OPENED, FUNDED).when(Deposit(aggregate_id=ID, amount=25)).then(
        MoneyDeposited(amount=25, balance_after=125)
    )


@pytest.mark.parametrize("amount", [1, MAX_AMOUNT])
def test_deposit_boundary_amounts(amount: int) -> None:
    scenario(ACCOUNT).given(OPENED).when(Deposit(aggregate_id=ID, amount=amount)).then(
        MoneyDeposited(amount=amount, balance_after=amount)
    )


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_deposit_refuses_invalid_amount(amount: int) -> None:
    err = scenario(ACCOUNT).given(OPENED).when(Deposit(aggregate_id=ID, amount=amount)).raises(
        InvalidAmount
    )
    assert err.details["field"] == "amount"  # type: ignore[attr-defined]


def test_deposit_up_to_the_balance_limit() -> None:
    near = MoneyDeposited(amount=1, balance_after=MAX_BALANCE - 1)
    scenario(ACCOUNT).given(OPENED, near).when(Deposit(aggregate_id=ID, amount=1)).then(
        MoneyDeposited(amount=1, balance_after=MAX_BALANCE)
    )
    err = scenario(ACCOUNT).given(OPENED, near).when(Deposit(aggregate_id=ID, amount=2)).raises(
        BalanceLimitExceeded
    )
    assert isinstance(err, RuleViolation)


def test_deposit_allowed_while_frozen() -> None:
    state = scenario(ACCOUNT).given(OPENED, FROZEN).when(Deposit(aggregate_id=ID, amount=5)).then(
        MoneyDeposited(amount=5, balance_after=5)
    )
    assert state.status is AccountStatus.FROZEN


def test_deposit_missing_account_not_found() -> None:
    scenario(ACCOUNT).when(Deposit(aggregate_id=ID, amount=1)).raises(NotFound)


def test_deposit_closed_account() -> None:
    scenario(ACCOUNT).given(OPENED, CLOSED).when(Deposit(aggregate_id=ID, amount=1)).raises(
        AccountClosedError
    )


# --- Withdraw --------------------------------------------------------------------------------


def test_withdraw() -> None:
    state = scenario(ACCOUNT).given(OPENED, FUNDED).when(Withdraw(aggregate_id=ID, amount=30)).then(
        MoneyWithdrawn(amount=30, balance_after=70)
    )
    assert state.balance == 70


def test_withdraw_whole_balance() -> None:
    scenario(ACCOUNT).given(OPENED, FUNDED).when(Withdraw(aggregate_id=ID, amount=100)).then(
        MoneyWithdrawn(amount=100, balance_after=0)
    )


def test_withdraw_cannot_overdraw() -> None:
    err = scenario(ACCOUNT).given(OPENED, FUNDED).when(Withdraw(aggregate_id=ID, amount=101)).raises(
        InsufficientFunds
    )
    assert isinstance(err, RuleViolation)
    assert err.details == {"id": ID, "amount": 101, "balance": 100}  # type: ignore[attr-defined]


def test_withdraw_from_empty_account() -> None:
    scenario(ACCOUNT).given(OPENED).when(Withdraw(aggregate_id=ID, amount=1)).raises(
        InsufficientFunds
    )


def test_withdraw_max_amount() -> None:
    rich = MoneyDeposited(amount=MAX_AMOUNT, balance_after=MAX_AMOUNT)
    scenario(ACCOUNT).given(OPENED, rich).when(Withdraw(aggregate_id=ID, amount=MAX_AMOUNT)).then(
        MoneyWithdrawn(amount=MAX_AMOUNT, balance_after=0)
    )


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_withdraw_refuses_invalid_amount(amount: int) -> None:
    rich = MoneyDeposited(amount=MAX_AMOUNT, balance_after=10 * MAX_AMOUNT)
    scenario(ACCOUNT).given(OPENED, rich).when(Withdraw(aggregate_id=ID, amount=amount)).raises(
        InvalidAmount
    )


def test_withdraw_frozen_account() -> None:
    scenario(ACCOUNT).given(OPENED, FUNDED, FROZEN).when(Withdraw(aggregate_id=ID, amount=1)).raises(
        AccountFrozenError
    )


def test_withdraw_closed_account() -> None:
    scenario(ACCOUNT).given(OPENED, CLOSED).when(Withdraw(aggregate_id=ID, amount=1)).raises(
        AccountClosedError
    )


def test_withdraw_missing_account_not_found() -> None:
    scenario(ACCOUNT).when(Withdraw(aggregate_id=ID, amount=1)).raises(NotFound)


# --- FreezeAccount / UnfreezeAccount ---------------------------------------------------------


def test_freeze() -> None:
    state = scenario(ACCOUNT).given(OPENED, FUNDED).when(
        FreezeAccount(aggregate_id=ID, reason=" fraud check ")
    ).then(FROZEN)
    assert state.status is AccountStatus.FROZEN and state.balance == 100


def test_freeze_frozen_account_is_a_no_op() -> None:
    scenario(ACCOUNT).given(OPENED, FROZEN).when(FreezeAccount(aggregate_id=ID, reason="again")).then()


@pytest.mark.parametrize("reason", ["", "  ", "x" * (MAX_REASON_LENGTH + 1), "a\x07b"])
def test_freeze_invalid_reason(reason: str) -> None:
    err = scenario(ACCOUNT).given(OPENED).when(FreezeAccount(aggregate_id=ID, reason=reason)).raises(
        InvalidCommand
    )
    assert err.details["field"] == "reason"  # type: ignore[attr-defined]


def test_freeze_missing_account_not_found() -> None:
    scenario(ACCOUNT).when(FreezeAccount(aggregate_id=ID, reason="x")).raises(NotFound)


def test_freeze_closed_account() -> None:
    scenario(ACCOUNT).given(OPENED, CLOSED).when(FreezeAccount(aggregate_id=ID, reason="x")).raises(
        AccountClosedError
    )


def test_unfreeze() -> None:
    state = scenario(ACCOUNT).given(OPENED, FROZEN).when(UnfreezeAccount(aggregate_id=ID)).then(
        AccountUnfrozen()
    )
    assert state.status is AccountStatus.ACTIVE


def test_unfreeze_active_account_is_a_no_op() -> None:
    scenario(ACCOUNT).given(OPENED).when(UnfreezeAccount(aggregate_id=ID)).then()


def test_unfreeze_missing_account_not_found() -> None:
    scenario(ACCOUNT).when(UnfreezeAccount(aggregate_id=ID)).raises(NotFound)


def test_unfreeze_closed_account() -> None:
    scenario(ACCOUNT).given(OPENED, CLOSED).when(UnfreezeAccount(aggregate_id=ID)).raises(
        AccountClosedError
    )


def test_withdraw_after_unfreeze() -> None:
    scenario(ACCOUNT).given(OPENED, FUNDED, FROZEN, AccountUnfrozen()).when(
        Withdraw(aggregate_id=ID, amount=100)
    ).then(MoneyWithdrawn(amount=100, balance_after=0))


# --- CloseAccount ----------------------------------------------------------------------------


def test_close_empty_account() -> None:
    state = scenario(ACCOUNT).given(OPENED).when(CloseAccount(aggregate_id=ID)).then(CLOSED)
    assert state.status is AccountStatus.CLOSED


def test_close_after_emptying() -> None:
    scenario(ACCOUNT).given(OPENED, FUNDED, MoneyWithdrawn(amount=100, balance_after=0)).when(
        CloseAccount(aggregate_id=ID)
    ).then(CLOSED)


def test_close_with_balance() -> None:
    err = scenario(ACCOUNT).given(OPENED, FUNDED).when(CloseAccount(aggregate_id=ID)).raises(
        NonZeroBalance
    )
    assert isinstance(err, RuleViolation)
    assert err.details["balance"] == 100  # type: ignore[attr-defined]


def test_close_frozen_account() -> None:
    scenario(ACCOUNT).given(OPENED, FROZEN).when(CloseAccount(aggregate_id=ID)).raises(
        AccountFrozenError
    )


def test_close_closed_account() -> None:
    scenario(ACCOUNT).given(OPENED, CLOSED).when(CloseAccount(aggregate_id=ID)).raises(
        AccountClosedError
    )


def test_close_missing_account_not_found() -> None:
    scenario(ACCOUNT).when(CloseAccount(aggregate_id=ID)).raises(NotFound)


# --- evolve ----------------------------------------------------------------------------------


def test_fold_full_history_trusts_balance_after() -> None:
    state = ACCOUNT.fold(
        [
            OPENED,
            MoneyDeposited(amount=500, balance_after=500),
            MoneyWithdrawn(amount=200, balance_after=300),
            FROZEN,
            MoneyDeposited(amount=1, balance_after=301),
            AccountUnfrozen(),
            MoneyWithdrawn(amount=301, balance_after=0),
            CLOSED,
        ]
    )
    assert state == AccountState(
        owner_id="user-1", currency="EUR", balance=0, status=AccountStatus.CLOSED
    )


def test_evolve_never_fails_on_out_of_order_or_foreign_events() -> None:
    from eventray.aggregates.user import UserRegistered

    assert ACCOUNT.evolve(None, FUNDED) is None
    state = ACCOUNT.fold([OPENED])
    assert ACCOUNT.evolve(state, UserRegistered(name="x", email="x@y.zz")) is state


def test_decide_refuses_a_foreign_command() -> None:
    from eventray.aggregates.user import ChangeEmail

    with pytest.raises(InvalidCommand):
        ACCOUNT.decide(ACCOUNT.fold([OPENED]), ChangeEmail(aggregate_id=ID, email="a@b.co"))


def test_events_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        MoneyDeposited(100, 100)  # type: ignore[misc]
