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

Transfers (the TransferMoney saga) use their own commands, which carry the ``transfer_id``
for idempotency and audit, and reuse ``_credit`` / ``_debit``:

* ``DebitForTransfer`` on the source, ``CreditForTransfer`` on the target, and the
  compensations ``RefundTransfer`` (source) and ``VoidTransferCredit`` (target).
* The account remembers the last ``TRANSFER_MEMORY`` transfer ids it took part in, with what
  happened (``AccountState.transfers``). A transfer command repeated with a new
  ``command_id`` (a saga retry) is then a **no-op**: a transfer debits or credits an account
  at most once, whatever the command-id window.
* Compensation is decided by the account, not guessed by the saga: ``RefundTransfer`` refunds
  a debit that happened, or, when none did, records ``TransferDebitVoided`` so that a late
  debit of that transfer is refused (``TransferVoided``). ``VoidTransferCredit`` likewise
  records ``TransferCreditVoided`` unless the credit already happened (then it is a no-op and
  the saga learns of the credit from the log). So a timed-out step never leaves money half
  moved.
* A **frozen** target refuses transfer credits (unlike plain deposits): inbound transfers to
  a frozen account are held back and refunded. A refund to a frozen source is allowed.
* ``VoidTransferCredit`` is taken even by a closed account: it moves no money, it only records
  that the transfer will not arrive.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeAlias

import msgspec

from eventray.platform.domain import AggregateType, Command, Event, Id
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
    "CreditForTransfer",
    "CurrencyMismatch",
    "DebitForTransfer",
    "RefundTransfer",
    "SameAccountTransfer",
    "TRANSFER_MEMORY",
    "TransferCredited",
    "TransferCreditVoided",
    "TransferDebited",
    "TransferDebitVoided",
    "TransferRefunded",
    "TransferVoided",
    "VoidTransferCredit",
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
MAX_TRANSFER_ID_LENGTH = 128
#: how many recent transfer ids an account remembers (idempotency of transfer commands)
TRANSFER_MEMORY = 512

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


class CurrencyMismatch(RuleViolation):
    """The transfer's currency is not the account's."""

    code = "CURRENCY_MISMATCH"


class TransferVoided(RuleViolation):
    """The transfer was voided on this account (compensated); it can no longer move money here."""

    code = "TRANSFER_VOIDED"


class SameAccountTransfer(InvalidCommand):
    """A transfer's source and target must be different accounts."""

    code = "SAME_ACCOUNT_TRANSFER"


# --- commands ------------------------------------------------------------------------------

#: minor units; the API's ``Money`` scalar (a 64-bit integer, sent as a string beyond 2^53)
Money = Annotated[int, msgspec.Meta(extra={"graphql": "Money"})]

# Commands and events inherit frozen=True and tag=True from their bases; kw_only=True is per
# class in msgspec, so it is repeated here (two str fields or two ints must never be swapped
# by position). frozen=True is repeated too, so type checkers see it.


class OpenAccount(Command, frozen=True, kw_only=True):
    """Open the account ``aggregate_id`` for ``owner_id`` (a user id) in ``currency``."""

    creates: ClassVar[bool] = True

    owner_id: Id
    currency: str


class Deposit(Command, frozen=True, kw_only=True):
    """Credit ``amount`` minor units. Allowed while frozen."""

    amount: Money


class Withdraw(Command, frozen=True, kw_only=True):
    """Debit ``amount`` minor units; refused if it would overdraw or the account is frozen."""

    amount: Money


class FreezeAccount(Command, frozen=True, kw_only=True):
    """Stop withdrawals and closing; a no-op on a frozen account."""

    reason: str


class UnfreezeAccount(Command, frozen=True, kw_only=True):
    """Lift a freeze; a no-op on an active account."""


class CloseAccount(Command, frozen=True, kw_only=True):
    """Close the account for good; its balance must be zero and it must not be frozen."""


class DebitForTransfer(Command, frozen=True, kw_only=True):
    """Debit ``amount`` from the source of transfer ``transfer_id`` (to ``counterparty``)."""

    transfer_id: str
    amount: int
    currency: str
    counterparty: str


class CreditForTransfer(Command, frozen=True, kw_only=True):
    """Credit ``amount`` to the target of transfer ``transfer_id`` (from ``counterparty``)."""

    transfer_id: str
    amount: int
    currency: str
    counterparty: str


class RefundTransfer(Command, frozen=True, kw_only=True):
    """Compensate transfer ``transfer_id`` on its source: refund its debit, or void it if none."""

    transfer_id: str
    amount: int
    counterparty: str
    reason: str = ""


class VoidTransferCredit(Command, frozen=True, kw_only=True):
    """Make sure transfer ``transfer_id`` will not credit this account (a no-op if it already did)."""

    transfer_id: str


Commands: TypeAlias = (
    OpenAccount | Deposit | Withdraw | FreezeAccount | UnfreezeAccount | CloseAccount
    | DebitForTransfer | CreditForTransfer | RefundTransfer | VoidTransferCredit
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


class TransferDebited(Event, frozen=True, kw_only=True):
    """The source paid ``amount`` out for transfer ``transfer_id``."""

    transfer_id: str
    amount: int
    balance_after: int
    counterparty: str


class TransferCredited(Event, frozen=True, kw_only=True):
    """The target received ``amount`` for transfer ``transfer_id``."""

    transfer_id: str
    amount: int
    balance_after: int
    counterparty: str


class TransferRefunded(Event, frozen=True, kw_only=True):
    """The source got the debit of transfer ``transfer_id`` back (compensation)."""

    transfer_id: str
    amount: int
    balance_after: int
    counterparty: str
    reason: str = ""


class TransferDebitVoided(Event, frozen=True, kw_only=True):
    """Transfer ``transfer_id`` was compensated before it debited this account: it never will."""

    transfer_id: str


class TransferCreditVoided(Event, frozen=True, kw_only=True):
    """Transfer ``transfer_id`` will not credit this account."""

    transfer_id: str


Events: TypeAlias = (
    AccountOpened | MoneyDeposited | MoneyWithdrawn | AccountFrozen | AccountUnfrozen | AccountClosed
    | TransferDebited | TransferCredited | TransferRefunded | TransferDebitVoided | TransferCreditVoided
)
EVENT_TYPES: tuple[type[Event], ...] = (
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
    AccountFrozen,
    AccountUnfrozen,
    AccountClosed,
    TransferDebited,
    TransferCredited,
    TransferRefunded,
    TransferDebitVoided,
    TransferCreditVoided,
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
    #: recent transfer id -> what happened here: "debited", "refunded", "debit_voided",
    #: "credited" or "credit_voided" (the last TRANSFER_MEMORY, oldest dropped first)
    transfers: dict[str, str] = msgspec.field(default_factory=dict)


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


def _transfer_id(command: DebitForTransfer | CreditForTransfer) -> str:
    tid = command.transfer_id
    if type(tid) is not str or not tid or len(tid) > MAX_TRANSFER_ID_LENGTH or not _OWNER_ID.fullmatch(tid):
        raise InvalidCommand(
            f"transfer_id must be 1..{MAX_TRANSFER_ID_LENGTH} printable ASCII characters without spaces",
            field="transfer_id",
        )
    if command.counterparty == command.aggregate_id:
        raise SameAccountTransfer(f"transfer {tid!r} has {command.aggregate_id!r} on both sides", id=tid)
    return tid


def _same_currency(state: AccountState, command: DebitForTransfer | CreditForTransfer) -> None:
    if command.currency != state.currency:
        raise CurrencyMismatch(
            f"transfer {command.transfer_id!r} is in {command.currency!r}, account "
            f"{command.aggregate_id!r} is in {state.currency!r}",
            id=command.aggregate_id,
        )


def _voided(command: Command, tid: str) -> TransferVoided:
    return TransferVoided(f"transfer {tid!r} was voided on account {command.aggregate_id!r}", id=tid)


def _debit_for_transfer(state: AccountState | None, command: DebitForTransfer) -> tuple[Event, ...]:
    current = _open_state(state, command)
    tid = _transfer_id(command)
    seen = current.transfers.get(tid)
    if seen == "debit_voided":
        raise _voided(command, tid)
    if seen is not None:  # debited (and maybe refunded) already: a repeat
        return ()
    _not_frozen(current, command)
    _same_currency(current, command)
    moved = _debit(current, command, command.amount)
    return (TransferDebited(transfer_id=tid, amount=moved.amount, balance_after=moved.balance_after,
                            counterparty=command.counterparty),)


def _credit_for_transfer(state: AccountState | None, command: CreditForTransfer) -> tuple[Event, ...]:
    current = _open_state(state, command)
    tid = _transfer_id(command)
    seen = current.transfers.get(tid)
    if seen == "credit_voided":
        raise _voided(command, tid)
    if seen is not None:
        return ()
    _not_frozen(current, command)
    _same_currency(current, command)
    moved = _credit(current, command, command.amount)
    return (TransferCredited(transfer_id=tid, amount=moved.amount, balance_after=moved.balance_after,
                             counterparty=command.counterparty),)


def _refund_transfer(state: AccountState | None, command: RefundTransfer) -> tuple[Event, ...]:
    tid = command.transfer_id
    if state is not None and state.status is AccountStatus.CLOSED and state.transfers.get(tid) != "debited":
        # never debited (a debit whose outcome the saga could not learn, refused as closed): no
        # money moves, so a closed account records the void, as VoidTransferCredit does
        return () if tid in state.transfers else (TransferDebitVoided(transfer_id=tid),)
    current = _open_state(state, command)  # frozen is fine: money may come back
    seen = current.transfers.get(tid)
    if seen == "debited":
        moved = _credit(current, command, command.amount)
        reason = text(command.reason or "compensation", field="reason", max_length=MAX_REASON_LENGTH)
        return (TransferRefunded(transfer_id=tid, amount=moved.amount, balance_after=moved.balance_after,
                                 counterparty=command.counterparty, reason=reason),)
    if seen is None:
        return (TransferDebitVoided(transfer_id=tid),)
    return ()  # refunded or voided already


def _void_transfer_credit(state: AccountState | None, command: VoidTransferCredit) -> tuple[Event, ...]:
    if state is None:
        raise NotFound(f"account {command.aggregate_id!r} does not exist", id=command.aggregate_id)
    if command.transfer_id in state.transfers:  # credited or voided already
        return ()
    return (TransferCreditVoided(transfer_id=command.transfer_id),)


_DECIDERS: dict[type[Command], Callable[[AccountState | None, Any], tuple[Event, ...]]] = {
    DebitForTransfer: _debit_for_transfer,
    CreditForTransfer: _credit_for_transfer,
    RefundTransfer: _refund_transfer,
    VoidTransferCredit: _void_transfer_credit,
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
        CurrencyMismatch: a transfer in another currency than the account's.
        TransferVoided: a transfer debit or credit after the transfer was voided here.
        SameAccountTransfer: a transfer with the account on both sides.
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


def _remember_transfer(state: AccountState, tid: str, what: str, balance: int) -> AccountState:
    transfers = dict(state.transfers)
    transfers.pop(tid, None)  # re-insert: the newest entry is the last one
    transfers[tid] = what
    if len(transfers) > TRANSFER_MEMORY:
        del transfers[next(iter(transfers))]
    return msgspec.structs.replace(state, balance=balance, transfers=transfers)


def _transfer_debited(state: AccountState, event: TransferDebited) -> AccountState:
    return _remember_transfer(state, event.transfer_id, "debited", event.balance_after)


def _transfer_credited(state: AccountState, event: TransferCredited) -> AccountState:
    return _remember_transfer(state, event.transfer_id, "credited", event.balance_after)


def _transfer_refunded(state: AccountState, event: TransferRefunded) -> AccountState:
    return _remember_transfer(state, event.transfer_id, "refunded", event.balance_after)


def _transfer_debit_voided(state: AccountState, event: TransferDebitVoided) -> AccountState:
    return _remember_transfer(state, event.transfer_id, "debit_voided", state.balance)


def _transfer_credit_voided(state: AccountState, event: TransferCreditVoided) -> AccountState:
    return _remember_transfer(state, event.transfer_id, "credit_voided", state.balance)


_EVOLVERS: dict[type[Event], Callable[[Any, Any], AccountState]] = {
    TransferDebited: _transfer_debited,
    TransferCredited: _transfer_credited,
    TransferRefunded: _transfer_refunded,
    TransferDebitVoided: _transfer_debit_voided,
    TransferCreditVoided: _transfer_credit_voided,
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
    commands=(OpenAccount, Deposit, Withdraw, FreezeAccount, UnfreezeAccount, CloseAccount,
              DebitForTransfer, CreditForTransfer, RefundTransfer, VoidTransferCredit),
    events=EVENT_TYPES,
)
