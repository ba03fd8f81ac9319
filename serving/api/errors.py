"""Errors are data: one place maps eventray errors to typed GraphQL results.

Mutations return a ``CommandResult`` union: :func:`command_result` turns an
:class:`~eventray.platform.runtime.outcome.Outcome` (or an error raised before sending) into
the right member. Queries raise; :func:`format_error` is Ariadne's error formatter and puts
the stable code in ``extensions.code`` with a message a person can act on, never a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from graphql import GraphQLError

from eventray.platform import errors as E
from eventray.platform.runtime.outcome import Outcome, error_class

log = logging.getLogger("eventray.serving.errors")

# (error class, GraphQL type) in lookup order: the most specific first
_MEMBERS: tuple[tuple[type[E.EventrayError], str], ...] = (
    (E.InvalidCommand, "ValidationError"),
    (E.ConcurrencyConflict, "ConflictError"),
    (E.AlreadyExists, "ConflictError"),
    (E.NotFound, "NotFoundError"),
    (E.RuleViolation, "RuleViolationError"),
    (E.Forbidden, "ForbiddenError"),
    (E.Retryable, "RetryableError"),
)

#: categories for ``extensions.code`` of query errors
_CATEGORY = {
    "ValidationError": "VALIDATION", "ConflictError": "CONFLICT", "NotFoundError": "NOT_FOUND",
    "RuleViolationError": "RULE_VIOLATION", "ForbiddenError": "FORBIDDEN", "RetryableError": "RETRYABLE",
}


def graphql_name(field: str) -> str:
    """A command field's GraphQL name: ``owner_id`` -> ``ownerId``."""
    head, *rest = field.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def member_for(cls: type[BaseException]) -> str | None:
    for base, name in _MEMBERS:
        if issubclass(cls, base):
            return name
    return None


def success(outcome: Outcome) -> dict[str, Any]:
    first = outcome.version - len(outcome.events) + 1
    return {
        "__typename": "CommandSuccess",
        "commandId": outcome.command_id,
        "aggregateId": outcome.aggregate_id,
        "version": outcome.version,
        "duplicate": outcome.duplicate,
        "events": [{"type": type(e).__name__, "version": first + i, "data": msgspec.to_builtins(e)}
                   for i, e in enumerate(outcome.events)],
    }


def error_result(exc: E.EventrayError, *, command_id: str | None, aggregate_id: str | None) -> dict[str, Any]:
    """The ``CommandResult`` member for a typed error."""
    name = member_for(type(exc)) or "RetryableError"
    result: dict[str, Any] = {
        "__typename": name, "code": exc.code, "message": exc.message,
        "commandId": command_id, "aggregateId": aggregate_id,
    }
    if name == "ValidationError":
        field = exc.details.get("field")
        result["field"] = graphql_name(field) if isinstance(field, str) else None
    elif name == "RuleViolationError":
        result["rule"] = exc.details.get("error_type") or type(exc).__name__
    return result


def command_result(outcome: Outcome) -> dict[str, Any]:
    """The ``CommandResult`` member for an outcome."""
    if outcome.error_code is None:
        return success(outcome)
    cls = error_class(outcome.error_code)
    if member_for(cls) is None:
        if not outcome.retryable:
            # a failure no CommandResult member names: a GraphQL error (INTERNAL), logged
            log.error("command %s failed: %s %s", outcome.command_id, outcome.error_type, outcome.error_message)
            raise E.EventrayError(f"command failed ({outcome.error_type})")
        cls = E.ServiceUnavailable
    exc = cls(outcome.error_message or "")
    exc.details["error_type"] = outcome.error_type
    if outcome.error_field is not None:
        exc.details["field"] = outcome.error_field
    return error_result(exc, command_id=outcome.command_id, aggregate_id=outcome.aggregate_id)


def resolve_command_result_type(obj: dict[str, Any], *_: Any) -> str:
    return obj["__typename"]


def format_error(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
    """Ariadne error formatter: stable codes, no internals."""
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    extensions = dict(formatted.get("extensions") or {})
    if isinstance(original, E.EventrayError):
        name = member_for(type(original))
        extensions["code"] = _CATEGORY.get(name or "", original.code)
        if original.code != extensions["code"]:
            extensions["reason"] = original.code
        field = original.details.get("field")
        if field:
            extensions["field"] = field
        formatted["message"] = original.message
    elif original is not None and not isinstance(original, GraphQLError):
        log.error("unexpected error in a resolver", exc_info=original)
        formatted["message"] = "internal error"
        extensions = {"code": "INTERNAL"}
    else:
        extensions.setdefault("code", "GRAPHQL_VALIDATION_FAILED" if not formatted.get("path") else "BAD_REQUEST")
    extensions.pop("exception", None)
    formatted["extensions"] = extensions
    return formatted
