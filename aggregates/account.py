"""The Account aggregate: a single-currency balance in integer minor units.

Decisions documented here so callers, sagas and read models can rely on them:

* Amounts are ``int`` minor units (cents), ``0 < amount <= MAX_AMOUNT`` per movement; a
  ``bool`` or ``float`` is refused. The balance never exceeds ``MAX_BALANCE`` (a signed
  64-bit integer, so a PostgreSQL ``BIGINT`` read model always holds it) and never goes
  below zero.
* The currency is a three-letter uppercase code (``"EUR"``); it is not uppercased for the
  caller: ``"eur"`` is refused, since silently changing money fields hides client bugs.
* Check order in ``decide``: existence (``NotFound`` / ``AlreadyExists``), then the
  lifecycle (``AccountClosedError``, then ``AccountFrozenError`` where it applies), then the
  command's fields (``InvalidCommand`` subclasses), then the balance rules.
* A **frozen** account takes deposits (money may still arrive, e.g. a salary) but no
  withdrawals, and cannot be closed: unfreeze it first.
* A **closed** account takes nothing: every command raises ``AccountClosedError``
  (``OpenAccount`` raises ``AlreadyExists``: the id is taken).
* ``FreezeAccount`` on a frozen account and ``UnfreezeAccount`` on an active one are
  **no-ops** (no events): the requested state already holds, so an operator or a saga can
  send them again safely.
* ``MoneyDeposited`` and ``MoneyWithdrawn`` carry ``balance_after``, so read models set the
  balance instead of folding; ``evolve`` trusts it the same way.
* Events do not repeat the aggregate id: the event envelope carries it (it is the Kafka key).

Transfers: a later saga adds transfer-aware commands carrying a ``transfer_id``. They reuse
``_credit`` / ``_debit`` below, and their events add fields with defaults only.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Any, TypeAlias

import msgspec

from eventray.platform.domain import AggregateType, Command, Event
from eventray.platform.errors import AlreadyExists, InvalidCommand, NotFound, RuleViolation

from ._validation import text

__all__ = [
    "ACCOUNT",
    "AccountClosed",
    "AccountClosedError",
    "AccountFrozen",
    "AccountFrozenError",
    "AccountOpened",
    "AccountState",
    "AccountStatus",
    "AccountUnfrozen",
    "BalanceLimitExceeded",
    "CloseAccount",
    "Commands",
    "Deposit",
    "Events",
    "FreezeAccount",
    "InsufficientFunds",
    "InvalidAmount",
    "InvalidCurrency",
    "MAX_AMOUNT",
    "MAX_BALANCE",
    "MAX_OWNER_ID_LENGTH",
    "MAX_REASON_LENGTH",
    "MoneyDeposited",
    "MoneyWithdrawn",
    "NonZeroBalance",
    "OpenAccount",
    "UnfreezeAccount",
    "Withdraw",
    "decide",
    "evolve",
]

#: the largest single deposit or withdrawal, in minor units
MAX_AMOUNT = 10**12
#: the largest balance, in minor units: fits a signed 64-bit integer (PostgreSQL BIGINT)
MAX_BALANCE = 2**63 - 1
MAX_OWNER_ID_LENGTH = 128
MAX_REASON_LENGTH = 500

# Compiled once: decide runs on the shard's hot path.
_CURRENCY = re.compile(r"[A-Z]{3}")
# Printable ASCII without spaces: ids are keys in read models and logs.
_OWNER_ID = re.compile(r"[\x21-\x7e]+")


# --- errors --------------------------------------------------------------------------------


class InvalidAmount(InvalidCommand):
    """The amount is not an integer number of minor units in (0, MAX_AMOUNT]."""

    code = "INVALID_AMOUNT"


class InvalidCurrency(InvalidCommand):
    """The currency is not a three-letter uppercase code."""

    code = "INVALID_CURRENCY"


class InsufficientFunds(RuleViolation):
    """The withdrawal would overdraw the account."""

    code = "INSUFFICIENT_FUNDS"


class BalanceLimitExceeded(RuleViolation):
    """The deposit would take the balance above MAX_BALANCE."""

    code = "BALANCE_LIMIT_EXCEEDED"


class AccountFrozenError(RuleViolation):
    """The account is frozen: no withdrawals and no closing until it is unfrozen."""

    code = "ACCOUNT_FROZEN"


class AccountClosedError(RuleViolation):
    """The account is closed and takes no further commands."""

    code = "ACCOUNT_CLOSED"


class NonZeroBalance(RuleViolation):
    """Only an account with a zero balance can be closed."""

    code = "NON_ZERO_BALANCE"


# --- commands ------------------------------------------------------------------------------
# Commands and events inherit frozen=True and tag=True from their bases; kw_only=True is per
# class in msgspec, so it is repeated here (two str fields or two ints must never be swapped
# by position). frozen=True is repeated too, so type checkers see it.


class OpenAccount(Command, frozen=True, kw_only=True):
    """Open the account ``aggregate_id`` for ``owner_id`` (a user id) in ``currency``."""

    owner_id: str
    currency: str


class Deposit(Command, frozen=True, kw_only=True):
    """Credit ``amount`` minor units. Allowed while frozen."""

    amount: int


class Withdraw(Command, frozen=True, kw_only=True):
    """Debit ``amount`` minor units; refused if it would overdraw or the account is frozen."""

    amount: int


class FreezeAccount(Command, frozen=True, kw_only=True):
    """Stop withdrawals and closing; a no-op on a frozen account."""

    reason: str


class UnfreezeAccount(Command, frozen=True, kw_only=True):
    """Lift a freeze; a no-op on an active account."""


class CloseAccount(Command, frozen=True, kw_only=True):
    """Close the account for good; its balance must be zero and it must not be frozen."""


Commands: TypeAlias = (
    OpenAccount | Deposit | Withdraw | FreezeAccount | UnfreezeAccount | CloseAccount
)


# --- events --------------------------------------------------------------------------------


class AccountOpened(Event, frozen=True, kw_only=True):
    """An account was opened with a zero balance."""

    owner_id: str
    currency: str


class MoneyDeposited(Event, frozen=True, kw_only=True):
    """``amount`` was credited; ``balance_after`` is the balance that resulted."""

    amount: int
    balance_after: int


class MoneyWithdrawn(Event, frozen=True, kw_only=True):
    """``amount`` was debited; ``balance_after`` is the balance that resulted."""

    amount: int
    balance_after: int


class AccountFrozen(Event, frozen=True, kw_only=True):
    """The account was frozen."""

    reason: str


class AccountUnfrozen(Event, frozen=True, kw_only=True):
    """The freeze was lifted."""


class AccountClosed(Event, frozen=True, kw_only=True):
    """The account was closed (with a zero balance)."""


Events: TypeAlias = (
    AccountOpened | MoneyDeposited | MoneyWithdrawn | AccountFrozen | AccountUnfrozen | AccountClosed
)
EVENT_TYPES: tuple[type[Event], ...] = (
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
    AccountFrozen,
    AccountUnfrozen,
    AccountClosed,
)


# --- state ---------------------------------------------------------------------------------


class AccountStatus(enum.Enum):
    """Lifecycle of an account."""

    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


class AccountState(msgspec.Struct, frozen=True, kw_only=True):
    """An account's current state, as folded from its events (and stored in snapshots)."""

    owner_id: str
    currency: str
    balance: int = 0
    status: AccountStatus = AccountStatus.ACTIVE


# --- validation ----------------------------------------------------------------------------


def _amount(value: int) -> int:
    # type() is not int: refuses bool (an int subclass) and float; also the fastest check.
    if type(value) is not int or value <= 0 or value > MAX_AMOUNT:
        raise InvalidAmount(
            f"amount must be an integer in 1..{MAX_AMOUNT} minor units, got {value!r}",
            field="amount",
        )
    return value


def _currency(value: str) -> str:
    if type(value) is not str or not _CURRENCY.fullmatch(value):
        raise InvalidCurrency(
            f"currency must be a three-letter uppercase code such as 'EUR', got {value!r}",
            field="currency",
        )
    return value


def _owner_id(value: str) -> str:
    if (
        type(value) is not str
        or len(value) > MAX_OWNER_ID_LENGTH
        or not _OWNER_ID.fullmatch(value)
    ):
        raise InvalidCommand(
            f"owner_id must be 1..{MAX_OWNER_ID_LENGTH} printable ASCII characters "
            "without spaces",
            field="owner_id",
        )
    return value


# --- decide --------------------------------------------------------------------------------


def _open_state(state: AccountState | None, command: Command) -> AccountState:
    """``state`` if the account exists and is not closed."""
    if state is None:
        raise NotFound(f"account {command.aggregate_id!r} does not exist", id=command.aggregate_id)
    if state.status is AccountStatus.CLOSED:
        raise AccountClosedError(
            f"account {command.aggregate_id!r} is closed", id=command.aggregate_id
        )
    return state


def _not_frozen(state: AccountState, command: Command) -> None:
    if state.status is AccountStatus.FROZEN:
        raise AccountFrozenError(
            f"account {command.aggregate_id!r} is frozen", id=command.aggregate_id
        )


def _credit(state: AccountState, command: Command, amount: int) -> MoneyDeposited:
    balance_after = state.balance + _amount(amount)
    if balance_after > MAX_BALANCE:
        raise BalanceLimitExceeded(
            f"a deposit of {amount} would exceed the balance limit",
            id=command.aggregate_id,
            amount=amount,
            balance=state.balance,
        )
    return MoneyDeposited(amount=amount, balance_after=balance_after)


def _debit(state: AccountState, command: Command, amount: int) -> MoneyWithdrawn:
    balance_after = state.balance - _amount(amount)
    if balance_after < 0:
        raise InsufficientFunds(
            f"cannot withdraw {amount} from a balance of {state.balance}",
            id=command.aggregate_id,
            amount=amount,
            balance=state.balance,
        )
    return MoneyWithdrawn(amount=amount, balance_after=balance_after)


def _open(state: AccountState | None, command: OpenAccount) -> tuple[Event, ...]:
    if state is not None:
        raise AlreadyExists(
            f"account {command.aggregate_id!r} already exists", id=command.aggregate_id
        )
    return (
        AccountOpened(owner_id=_owner_id(command.owner_id), currency=_currency(command.currency)),
    )


def _deposit(state: AccountState | None, command: Deposit) -> tuple[Event, ...]:
    current = _open_state(state, command)
    return (_credit(current, command, command.amount),)


def _withdraw(state: AccountState | None, command: Withdraw) -> tuple[Event, ...]:
    current = _open_state(state, command)
    _not_frozen(current, command)
    return (_debit(current, command, command.amount),)


def _freeze(state: AccountState | None, command: FreezeAccount) -> tuple[Event, ...]:
    current = _open_state(state, command)
    reason = text(command.reason, field="reason", max_length=MAX_REASON_LENGTH)
    if current.status is AccountStatus.FROZEN:
        return ()
    return (AccountFrozen(reason=reason),)


def _unfreeze(state: AccountState | None, command: UnfreezeAccount) -> tuple[Event, ...]:
    current = _open_state(state, command)
    if current.status is AccountStatus.ACTIVE:
        return ()
    return (AccountUnfrozen(),)


def _close(state: AccountState | None, command: CloseAccount) -> tuple[Event, ...]:
    current = _open_state(state, command)
    _not_frozen(current, command)
    if current.balance != 0:
        raise NonZeroBalance(
            f"account {command.aggregate_id!r} has a balance of {current.balance}",
            id=command.aggregate_id,
            balance=current.balance,
        )
    return (AccountClosed(),)


_DECIDERS: dict[type[Command], Callable[[AccountState | None, Any], tuple[Event, ...]]] = {
    OpenAccount: _open,
    Deposit: _deposit,
    Withdraw: _withdraw,
    FreezeAccount: _freeze,
    UnfreezeAccount: _unfreeze,
    CloseAccount: _close,
}


def decide(state: AccountState | None, command: Commands) -> tuple[Event, ...]:
    """Decide the events for ``command`` against ``state`` (``None``: not opened).

    Raises:
        NotFound: the account does not exist (any command but ``OpenAccount``).
        AlreadyExists: ``OpenAccount`` for an existing account.
        AccountClosedError: the account is closed.
        AccountFrozenError: ``Withdraw`` or ``CloseAccount`` on a frozen account.
        InsufficientFunds: the withdrawal would overdraw.
        BalanceLimitExceeded: the deposit would exceed ``MAX_BALANCE``.
        NonZeroBalance: ``CloseAccount`` with money left.
        InvalidAmount, InvalidCurrency, InvalidCommand: a field is not valid.
    """
    decider = _DECIDERS.get(type(command))
    if decider is None:
        raise InvalidCommand(f"Account does not handle {type(command).__name__}")
    return decider(state, command)


# --- evolve --------------------------------------------------------------------------------


def _opened(state: AccountState | None, event: AccountOpened) -> AccountState:
    return AccountState(owner_id=event.owner_id, currency=event.currency)


def _balance_changed(state: AccountState, event: MoneyDeposited | MoneyWithdrawn) -> AccountState:
    return msgspec.structs.replace(state, balance=event.balance_after)


def _frozen(state: AccountState, event: AccountFrozen) -> AccountState:
    return msgspec.structs.replace(state, status=AccountStatus.FROZEN)


def _unfrozen(state: AccountState, event: AccountUnfrozen) -> AccountState:
    return msgspec.structs.replace(state, status=AccountStatus.ACTIVE)


def _closed(state: AccountState, event: AccountClosed) -> AccountState:
    return msgspec.structs.replace(state, status=AccountStatus.CLOSED)


_EVOLVERS: dict[type[Event], Callable[[Any, Any], AccountState]] = {
    AccountOpened: _opened,
    MoneyDeposited: _balance_changed,
    MoneyWithdrawn: _balance_changed,
    AccountFrozen: _frozen,
    AccountUnfrozen: _unfrozen,
    AccountClosed: _closed,
}


def evolve(state: AccountState | None, event: Events) -> AccountState | None:
    """Apply ``event`` to ``state``. Never fails.

    An event of another aggregate, or a change event before ``AccountOpened`` (impossible in
    a well-formed log), leaves the state as it is.
    """
    evolver = _EVOLVERS.get(type(event))
    if evolver is None or (state is None and evolver is not _opened):
        return state
    return evolver(state, event)


ACCOUNT: AggregateType[AccountState] = AggregateType(
    name="Account",
    state_type=AccountState,
    decide=decide,
    evolve=evolve,
    commands=(OpenAccount, Deposit, Withdraw, FreezeAccount, UnfreezeAccount, CloseAccount),
    events=EVENT_TYPES,
)
