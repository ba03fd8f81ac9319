"""The platform's authorisation helpers; what a role may do in a domain is the app's rules.

Roles come from the token (``admin``, ``teller``, ``customer``; ``anonymous`` only where the
settings allow it, never in production). Every command an app exposes has a rule,
``async rule(principal, command, context)``, that raises :class:`Forbidden` to refuse it
(``GraphQLExtension.commands``); a command without one is for admins only (:func:`admins_only`).
"""

from __future__ import annotations

from typing import Any

from eventray.platform.errors import Forbidden
from eventray.serving.api.principal import Principal

__all__ = ["Principal", "admins_only", "denied", "require_admin", "staff_only"]


def denied(what: str) -> Forbidden:
    return Forbidden(f"not allowed to {what}")


def require_admin(principal: Principal, what: str) -> None:
    if principal.role != "admin":
        raise denied(f"{what} (admins only)")


async def admins_only(principal: Principal, command: Any, context: Any) -> None:
    """The rule of a command the app gave none: admins only."""
    require_admin(principal, f"send {type(command).__name__} (no rule for it in the app's GraphQLExtension)")


async def staff_only(principal: Principal, command: Any, context: Any) -> None:
    """Admins and tellers."""
    if not principal.is_staff:
        raise denied(f"send {type(command).__name__} (staff only)")
