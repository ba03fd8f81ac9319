"""The bank's rules of who may do what: roles (admin, teller, customer, anonymous) and ownership.

* admin: everything.
* teller: every command but ``DeactivateUser``; reads everything but projections.
* customer: only their own user (``user id == token subject``) and the accounts they own
  (``owner_id == subject``): profile and email changes, support messages, identity documents (KYC),
  opening accounts for themselves, deposits, withdrawals and closing. Freezing is staff work.
  The KYC saga's own steps (``RecordIdentityVerified``, ``RejectIdentityVerification``) have no
  mutation: nobody records a verification's outcome by hand.
* anonymous (only where the settings allow it, never in production): reads, no commands.

Ownership of an account is its ``owner_id``; it never changes after ``AccountOpened``, so
the owner lookup (:class:`Owners`) caches it. A customer asking about an account that does not
exist gets the same ``Forbidden`` as for someone else's: existence does not leak.

:data:`RULES` gives each command the platform exposes its rule
(``GraphQLExtension.commands``); each rule is ``async rule(principal, command, context)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from eventray.aggregates import account as acc
from eventray.aggregates import user as usr
from eventray.platform.domain import Command
from eventray.serving.api.policy import denied
from eventray.serving.api.principal import Principal

__all__ = ["RULES", "Owners", "denied", "require_account", "require_staff", "require_user"]


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


def _owners(context: Any) -> Owners:
    return context["app"].owners  # type: ignore[no-any-return]


def _staff_first(kind: str, principal: Principal, *, tellers: bool = True) -> bool:
    """True when the principal's role settles it (admin, or teller where allowed); raise for roles
    that may never send it."""
    if principal.role == "admin":
        return True
    if principal.role == "teller":
        if tellers:
            return True
        raise denied(f"send {kind} (admins only)")
    if principal.role != "customer":
        raise denied(f"send {kind} without a token")
    return False


async def own_user(principal: Principal, command: Command, context: Any) -> None:
    """Staff; or a customer on their own user (``user id == token subject``)."""
    if not _staff_first(type(command).__name__, principal) and command.aggregate_id != principal.subject:
        raise denied(f"send {type(command).__name__} for user {command.aggregate_id!r}")


async def admins_only(principal: Principal, command: Command, context: Any) -> None:
    kind = type(command).__name__
    if not _staff_first(kind, principal, tellers=False):
        raise denied(f"send {kind} for user {command.aggregate_id!r}")


async def own_new_account(principal: Principal, command: Any, context: Any) -> None:
    """Staff; or a customer opening an account for themselves."""
    if not _staff_first(type(command).__name__, principal) and command.owner_id != principal.subject:
        raise denied("open an account for another user")


async def own_account(principal: Principal, command: Command, context: Any) -> None:
    """Staff; or the customer who owns the account."""
    if not _staff_first(type(command).__name__, principal):
        await require_account(principal, command.aggregate_id, _owners(context))


async def staff(principal: Principal, command: Command, context: Any) -> None:
    """Admins and tellers: freezing is staff work."""
    kind = type(command).__name__
    if not _staff_first(kind, principal):
        raise denied(f"send {kind} (staff only)")


#: the commands the bank's API exposes, each with who may send it
RULES: dict[type[Command], Callable[..., Awaitable[None]]] = {
    usr.RegisterUser: own_user, usr.UpdateProfile: own_user, usr.ChangeEmail: own_user,
    usr.DeactivateUser: admins_only, usr.SendSupportMessage: own_user, usr.SubmitIdentityDocument: own_user,
    acc.OpenAccount: own_new_account, acc.Deposit: own_account, acc.Withdraw: own_account,
    acc.FreezeAccount: staff, acc.UnfreezeAccount: staff, acc.CloseAccount: own_account,
}


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
