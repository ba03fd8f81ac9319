"""Domain aggregates: pure Python, no I/O.

Each aggregate module exports its :class:`~eventray.platform.domain.AggregateType`
(``USER``, ``ACCOUNT``), its commands, events and errors, and ``Events`` / ``Commands``
union aliases. This package gathers what the runtime and the codec need.
"""

from __future__ import annotations

from typing import Any

from eventray.platform.domain import AggregateType, Event

from .account import ACCOUNT
from .user import USER

__all__ = ["ACCOUNT", "AGGREGATES", "ALL_EVENT_TYPES", "USER"]

#: every aggregate type the platform hosts
AGGREGATES: tuple[AggregateType[Any], ...] = (USER, ACCOUNT)

#: every event class, for the codec; event tags (class names) are unique across aggregates
ALL_EVENT_TYPES: tuple[type[Event], ...] = tuple(
    event_type for aggregate in AGGREGATES for event_type in aggregate.events
)


def _check_unique_tags() -> None:
    names = [event_type.__name__ for event_type in ALL_EVENT_TYPES]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TypeError(
            f"event class names must be unique across aggregates (they are the msgspec tags): "
            f"{duplicates}; rename one of each"
        )


_check_unique_tags()
