"""What a command returns: its events and new version, or a typed error."""

from __future__ import annotations

from typing import Any

import msgspec

from eventray.platform import errors as _errors
from eventray.platform.domain import Event

# code -> error class, for rebuilding typed errors on the caller's side of a Ray call
_ERRORS_BY_CODE: dict[str, type[_errors.EventrayError]] = {}


def _index(cls: type[_errors.EventrayError]) -> None:
    _ERRORS_BY_CODE.setdefault(cls.code, cls)
    for sub in cls.__subclasses__():
        _index(sub)


def error_class(code: str) -> type[_errors.EventrayError]:
    """The error class for a stable error code (unknown codes map to EventrayError)."""
    if not _ERRORS_BY_CODE:
        _index(_errors.EventrayError)
    return _ERRORS_BY_CODE.get(code, _errors.EventrayError)


def _field_of(exc: BaseException) -> str | None:
    field = getattr(exc, "details", {}).get("field")
    return field if isinstance(field, str) else None


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one command.

    Attributes:
        command_id: the command's idempotency key.
        aggregate_id: the aggregate it addressed.
        version: the aggregate's version after the command (unchanged on error).
        events: the events the command appended (empty for a no-op or an error).
        duplicate: True when ``command_id`` had been applied before; ``events`` and
            ``version`` are then those of the first application.
        error_code: ``None`` on success, else the stable code of the error.
        error_type: the error's class name, e.g. ``InsufficientFunds``.
        error_message: a sentence a person can act on.
        retryable: True when sending the same command again may succeed.
        error_field: the command field an ``InvalidCommand`` names (its ``field`` detail).
    """

    command_id: str
    aggregate_id: str
    version: int = 0
    events: tuple[Any, ...] = ()
    duplicate: bool = False
    error_code: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    retryable: bool = False
    error_field: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @property
    def error(self) -> _errors.EventrayError | None:
        """The typed error, rebuilt from its code, or ``None`` on success."""
        if self.error_code is None:
            return None
        exc = error_class(self.error_code)(self.error_message or "")
        exc.details["error_type"] = self.error_type
        if self.error_field is not None:
            exc.details["field"] = self.error_field
        return exc

    def raise_for_error(self) -> Outcome:
        """Raise the typed error if the command failed; else return self."""
        err = self.error
        if err is not None:
            raise err
        return self

    @classmethod
    def failure(cls, command_id: str, aggregate_id: str, exc: BaseException, version: int = 0) -> Outcome:
        code = getattr(exc, "code", "INTERNAL")
        return cls(
            command_id=command_id,
            aggregate_id=aggregate_id,
            version=version,
            error_code=code,
            error_type=type(exc).__name__,
            error_message=str(getattr(exc, "message", None) or exc),
            retryable=isinstance(exc, _errors.Retryable),
            error_field=_field_of(exc),
        )


def outcome_codec(event_types: tuple[type[Event], ...]) -> tuple[msgspec.msgpack.Encoder, msgspec.msgpack.Decoder]:
    """An encoder/decoder pair for ``list[Outcome]`` whose events decode to typed Structs."""

    union = _union(event_types)

    class _TypedOutcome(Outcome, frozen=True, kw_only=True):
        events: tuple[union, ...] = ()  # type: ignore[valid-type]

    return msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(list[_TypedOutcome])


def _union(types: tuple[type, ...]) -> Any:
    from typing import Union

    return Union[tuple(types)]  # noqa: UP007 - built at runtime
