"""Read-model definitions: each a :class:`~eventray.platform.projections.Projection`.

``PROJECTIONS`` maps each projection's name to its class; the runtime, ``eventray replay``
and ``eventray projections`` find them here. The read API is :mod:`eventray.projections.queries`.
"""

from __future__ import annotations

from eventray.platform.projections import Projection

from .account_activity import AccountActivity
from .account_balances import AccountBalances
from .alerts import Alerts
from .support_inbox import SupportInbox
from .user_directory import UserDirectory

__all__ = ["PROJECTIONS", "AccountActivity", "AccountBalances", "Alerts", "SupportInbox", "UserDirectory"]

PROJECTIONS: dict[str, type[Projection]] = {
    p.name: p for p in (UserDirectory, AccountBalances, AccountActivity, Alerts, SupportInbox)}
