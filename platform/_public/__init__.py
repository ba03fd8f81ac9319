"""eventray: an event-sourced domain platform for Python on the Ray actor runtime.

The public surface, all a domain needs::

    import eventray

    class PlaceOrder(eventray.Command, frozen=True, kw_only=True):
        creates = True          # the id may be left out: a new one is generated
        sku: str
        quantity: int

    ORDER = eventray.AggregateType(name="Order", state_type=OrderState, decide=decide, evolve=evolve,
                                   commands=(PlaceOrder, ...), events=(OrderPlaced, ...))

    app = eventray.App("shop", aggregates=[ORDER], projections=[OrderList], sagas=[Fulfilment])

and then ``eventray serve --app shop.app:app``. Aggregates are ``decide``/``evolve`` pairs over
frozen msgspec events; projections are :class:`Projection` subclasses with :func:`handles`
methods; sagas are :class:`SagaDefinition` state machines. :mod:`eventray.testing` has the
given/when/then helpers. Everything else in the distribution is the platform's own.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path as _Path

# In a source checkout (an editable install) this file is platform/_public/__init__.py, and
# eventray.platform is a namespace package (platform/ has no __init__.py: ARCHITECTURE.md) that
# setuptools' editable finder cannot reach below a regular package. The checkout's root holds
# platform/ and the other folders, so it joins this package's path. An installed wheel lays the
# folders out under eventray/ and needs nothing.
if _Path(__file__).parent.name == "_public" and _Path(__file__).parent.parent.name == "platform":
    __path__.append(str(_Path(__file__).resolve().parent.parent.parent))  # noqa: F821 - a package's __path__

from eventray.platform.app import App, GraphQLExtension, Saga
from eventray.platform.domain import AggregateType, Command, Event, Id, new_id
from eventray.platform.errors import (
    AlreadyExists,
    ConcurrencyConflict,
    DomainError,
    EventrayError,
    Forbidden,
    InvalidCommand,
    NotFound,
    Retryable,
    RuleViolation,
)
from eventray.platform.projections.definition import Projection, Record, Table, handles
from eventray.platform.projections.reads import ProjectionUnavailable, read_current
from eventray.platform.projections.writes import BatchWrites
from eventray.platform.sagas.definition import (
    ArmDeadline,
    Ask,
    AskFailed,
    CommandFailed,
    DeadlinePassed,
    Decision,
    LogEvent,
    Replied,
    SagaDefinition,
    SendCommand,
    command_id,
)

try:
    __version__ = version("eventray")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    # declaring an app
    "App", "GraphQLExtension", "Saga",
    # aggregates
    "AggregateType", "Command", "Event", "Id", "new_id",
    # projections, and reading them
    "BatchWrites", "Projection", "ProjectionUnavailable", "Record", "Table", "handles", "read_current",
    # sagas
    "ArmDeadline", "Ask", "AskFailed", "CommandFailed", "DeadlinePassed", "Decision", "LogEvent", "Replied",
    "SagaDefinition", "SendCommand", "command_id",
    # the domain errors
    "AlreadyExists", "ConcurrencyConflict", "DomainError", "EventrayError", "Forbidden", "InvalidCommand",
    "NotFound", "Retryable", "RuleViolation",
    "__version__",
]
