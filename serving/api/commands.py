"""GraphQL mutation inputs -> commands: validated with pydantic, stamped with the caller.

Each mutation's input is checked here (ids, lengths, version, the amount's integer range)
before a command is built; the aggregate then applies the domain rules. A failure is an
:class:`~eventray.platform.errors.InvalidCommand` naming the field, which the API returns as
a ``ValidationError`` result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from eventray.aggregates import account as acc
from eventray.aggregates import user as usr
from eventray.platform.domain import Command, new_id
from eventray.platform.errors import InvalidCommand

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
Version = Annotated[int, Field(ge=0)]
INT64_MAX = 2**63 - 1


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    commandId: Id | None = None
    expectedVersion: Version | None = None


class RegisterUserInput(_Input):
    userId: Id | None = None
    name: str
    email: str


class UpdateProfileInput(_Input):
    userId: Id
    name: str
    bio: str | None = None


class ChangeEmailInput(_Input):
    userId: Id
    email: str


class DeactivateUserInput(_Input):
    userId: Id
    reason: str


class OpenAccountInput(_Input):
    accountId: Id | None = None
    ownerId: Id
    currency: str


class AmountInput(_Input):
    accountId: Id
    amount: int


class FreezeAccountInput(_Input):
    accountId: Id
    reason: str


class AccountInput(_Input):
    accountId: Id


@dataclass(frozen=True)
class Spec:
    """How one mutation's input becomes a command."""

    model: type[_Input]
    command: type[Command]
    id_field: str
    fields: dict[str, str]  # command field <- input field


SPECS: dict[str, Spec] = {
    "registerUser": Spec(RegisterUserInput, usr.RegisterUser, "userId", {"name": "name", "email": "email"}),
    "updateProfile": Spec(UpdateProfileInput, usr.UpdateProfile, "userId", {"name": "name", "bio": "bio"}),
    "changeEmail": Spec(ChangeEmailInput, usr.ChangeEmail, "userId", {"email": "email"}),
    "deactivateUser": Spec(DeactivateUserInput, usr.DeactivateUser, "userId", {"reason": "reason"}),
    "openAccount": Spec(OpenAccountInput, acc.OpenAccount, "accountId",
                        {"owner_id": "ownerId", "currency": "currency"}),
    "deposit": Spec(AmountInput, acc.Deposit, "accountId", {"amount": "amount"}),
    "withdraw": Spec(AmountInput, acc.Withdraw, "accountId", {"amount": "amount"}),
    "freezeAccount": Spec(FreezeAccountInput, acc.FreezeAccount, "accountId", {"reason": "reason"}),
    "unfreezeAccount": Spec(AccountInput, acc.UnfreezeAccount, "accountId", {}),
    "closeAccount": Spec(AccountInput, acc.CloseAccount, "accountId", {}),
}


def build_command(mutation: str, raw: dict[str, Any], *, subject: str | None,
                  correlation_id: str | None) -> Command:
    """The command for ``mutation`` with input ``raw``; raises InvalidCommand naming the field."""
    spec = SPECS[mutation]
    try:
        data = spec.model.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidCommand(f"{field}: {first['msg']}", field=field) from None
    values = {name: getattr(data, source) for name, source in spec.fields.items()}
    return spec.command(
        aggregate_id=getattr(data, spec.id_field) or new_id(),
        command_id=data.commandId or new_id(),
        expected_version=data.expectedVersion,
        subject=subject,
        correlation_id=correlation_id,
        **values,
    )


def parse_money(value: Any) -> int:
    """``Money`` scalar input: an integer, or a string of digits, within a signed 64-bit range."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidCommand("amount must be an integer number of minor units", field="amount")
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("-").isdigit() or len(text) > 20:
            raise InvalidCommand(f"amount {value[:24]!r} is not an integer", field="amount")
        value = int(text)
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise InvalidCommand("amount is out of the 64-bit range", field="amount")
    return value


def serialize_money(value: int) -> int | str:
    """Within GraphQL's 53-bit-safe range: a number; beyond: a string (JSON clients lose digits)."""
    return value if -(2**53) < value < 2**53 else str(value)
