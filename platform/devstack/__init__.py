"""The local dev stack: PostgreSQL, single-node KRaft Kafka and a Ray head, started by eventray.

Public surface::

    up(settings=None, *, console=None) -> StackReport      # idempotent; thread/process safe
    down(settings=None) -> tuple[str, ...]                  # stops only what it started
    status(settings=None) -> StackReport
    effective_settings(settings=None) -> Settings           # addresses filled in

Each piece is skipped (reported ``external``) when its address is configured:
``EVENTRAY_DATABASE_URL``, ``EVENTRAY_KAFKA_BOOTSTRAP``, ``EVENTRAY_RAY_ADDRESS``.
"""

from .kafka import broker_properties
from .stack import PIECES, StackReport, down, render, status, up
from .state import PieceStatus, effective_settings

__all__ = [
    "PIECES",
    "PieceStatus",
    "StackReport",
    "broker_properties",
    "down",
    "effective_settings",
    "render",
    "status",
    "up",
]
