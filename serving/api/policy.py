"""Who may do what: roles (admin, teller, customer, anonymous) and ownership.

* admin: everything.
* teller: every command but ``DeactivateUser``; reads everything but projections.
* customer: only their own user (``user id == token subject``) and the accounts they own
  (``owner_id == subject``): profile and email changes, opening accounts for themselves,
  deposits, withdrawals and closing. Freezing is staff work.
* anonymous (only where the settings allow it, never in production): reads, no commands.

Ownership of an account is its ``owner_id``; it never changes after ``AccountOpened``, so
the owner lookup (:class:`Owners`) caches it. A customer asking about an account that does not
exist gets the same ``Forbidden`` as for someone else's: existence does not leak.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from eventray.aggregates import account as acc
from eventray.aggregates import user as usr
from eventray.platform.domain import Command
from eventray.platform.errors import Forbidden
from eventray.serving.api.principal import Principal

_USER_COMMANDS = (usr.RegisterUser, usr.UpdateProfile, usr.ChangeEmail, usr.DeactivateUser)
_CUSTOMER_ACCOUNT_COMMANDS = (acc.Deposit, acc.Withdraw, acc.CloseAccount)
_STAFF_ONLY = (acc.FreezeAccount, acc.UnfreezeAccount)


class Owners:
    """Account id -> owner id, from a lookup (consistent read) with an LRU cache."""

    def __init__(self, lookup: Callable[[str], Awaitable[str | None]], *, max_size: int = 200_000) -> None:
        self._lookup = lookup
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._max = max_size

    def remember(self, account_id: str, owner_id: str) -> None:
        self._cache[account_id] = owner_id
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)

    async def owner_of(self, account_id: str) -> str | None:
        owner = self._cache.get(account_id)
        if owner is None:
            owner = await self._lookup(account_id)
            if owner is not None:
                self.remember(account_id, owner)
        return owner


def denied(what: str) -> Forbidden:
    return Forbidden(f"not allowed to {what}")


async def authorize_command(principal: Principal, command: Command, owners: Owners) -> None:
    """Raise :class:`Forbidden` unless ``principal`` may send ``command``."""
    role = principal.role
    kind = type(command).__name__
    if role == "admin":
        return
    if role == "teller":
        if isinstance(command, usr.DeactivateUser):
            raise denied(f"send {kind} (admins only)")
        return
    if role != "customer":
        raise denied(f"send {kind} without a token")
    sub = principal.subject
    if isinstance(command, _USER_COMMANDS):
        if isinstance(command, usr.DeactivateUser) or command.aggregate_id != sub:
            raise denied(f"send {kind} for user {command.aggregate_id!r}")
        return
    if isinstance(command, acc.OpenAccount):
        if command.owner_id != sub:
            raise denied("open an account for another user")
        return
    if isinstance(command, _STAFF_ONLY):
        raise denied(f"send {kind} (staff only)")
    if isinstance(command, _CUSTOMER_ACCOUNT_COMMANDS):
        await require_account(principal, command.aggregate_id, owners)
        return
    raise denied(f"send {kind}")


async def require_account(principal: Principal, account_id: str, owners: Owners) -> None:
    """Raise :class:`Forbidden` unless ``principal`` may read or act on ``account_id``."""
    if principal.role != "customer":
        return
    if await owners.owner_of(account_id) != principal.subject:
        raise denied(f"access account {account_id!r}")


def require_user(principal: Principal, user_id: str) -> None:
    """Raise :class:`Forbidden` unless ``principal`` may read user ``user_id``."""
    if principal.role == "customer" and user_id != principal.subject:
        raise denied(f"access user {user_id!r}")


def require_staff(principal: Principal, what: str) -> None:
    if principal.role not in ("admin", "teller", "anonymous"):
        raise denied(what)


def require_admin(principal: Principal, what: str) -> None:
    if principal.role != "admin":
        raise denied(f"{what} (admins only)")
