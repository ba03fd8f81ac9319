"""The error types every layer of eventray speaks.

Callers tell retryable failures from permanent ones by type: everything under
:class:`Retryable` may succeed if sent again with the same ``command_id``; everything else
will fail the same way again. Adapters translate driver errors (``kafka.errors``,
``psycopg.errors``) into these at their edge.
"""

from __future__ import annotations


class EventrayError(Exception):
    """Base of every error eventray raises on purpose."""

    #: a stable, machine-readable code, used by the GraphQL error formatter and in logs
    code = "EVENTRAY_ERROR"

    def __init__(self, message: str = "", **details: object) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip().splitlines()[0]
        self.details = details

    def __reduce__(self):  # keep details across pickling (Ray ships errors between processes)
        return (_rebuild, (self.__class__, self.message, self.details))


def _rebuild(cls: type[EventrayError], message: str, details: dict) -> EventrayError:
    return cls(message, **details)


# --- permanent domain errors: the command is wrong for the current state -------------------


class DomainError(EventrayError):
    """A business rule refused the command. Sending it again will fail the same way."""

    code = "DOMAIN_ERROR"


class RuleViolation(DomainError):
    """The command breaks a business rule of the aggregate."""

    code = "RULE_VIOLATION"


class InvalidCommand(DomainError):
    """The command's fields are not valid (bad email, negative amount, ...)."""

    code = "VALIDATION"


class NotFound(DomainError):
    """The aggregate does not exist (no event has created it yet)."""

    code = "NOT_FOUND"


class UnknownCommand(InvalidCommand):
    """No aggregate of the app handles this command type."""

    code = "UNKNOWN_COMMAND"


class InvalidModelInput(InvalidCommand):
    """The input of a model is not valid for its schema; ``details`` names the field and problem."""

    code = "MODEL_INPUT"


class WrongInputShape(InvalidModelInput):
    """The input array does not have the shape the model's schema declares."""

    code = "MODEL_INPUT_SHAPE"


class NonFiniteInput(InvalidModelInput):
    """The input holds NaN or infinite values."""

    code = "MODEL_INPUT_NAN"


class EmptyText(InvalidModelInput):
    """A text input is empty or has no word the model can read."""

    code = "MODEL_INPUT_EMPTY_TEXT"


class TextTooLong(InvalidModelInput):
    """A text input is longer than the configured maximum (``EVENTRAY_ML_MAX_TEXT_CHARS``)."""

    code = "MODEL_INPUT_TEXT_TOO_LONG"


class InvalidImage(InvalidModelInput):
    """An image input is not a picture any supported format decodes (PNG, JPEG, WebP, GIF, BMP, TIFF)."""

    code = "MODEL_INPUT_IMAGE"


class EmptyImage(InvalidModelInput):
    """An image input has no bytes, or decodes to zero width or height."""

    code = "MODEL_INPUT_IMAGE_EMPTY"


class ImageTooLarge(InvalidModelInput):
    """An image input has more bytes or pixels than the configured maximum."""

    code = "MODEL_INPUT_IMAGE_TOO_LARGE"


class UnknownModel(NotFound):
    """No model of that name is in the registry."""

    code = "UNKNOWN_MODEL"


class UnknownModelVersion(UnknownModel):
    """The model exists but has no such version in the registry."""

    code = "UNKNOWN_MODEL_VERSION"


class AlreadyExists(DomainError):
    """The command would create an aggregate that already exists."""

    code = "ALREADY_EXISTS"


class ConcurrencyConflict(DomainError):
    """``expected_version`` does not match the aggregate's current version."""

    code = "CONFLICT"


class Forbidden(EventrayError):
    """The authenticated subject may not do this."""

    code = "FORBIDDEN"


# --- retryable errors: send again with the same command_id ---------------------------------


class Retryable(EventrayError):
    """A transient failure. Sending the same command again (same ``command_id``) is safe."""

    code = "RETRYABLE"


class Overloaded(Retryable):
    """The shard's queue is full. Back off and send again."""

    code = "OVERLOADED"


class ShardRecovering(Retryable):
    """The shard is replaying its partition and does not take commands yet."""

    code = "RECOVERING"


class CommitFailed(Retryable):
    """The Kafka transaction for the batch did not commit; nothing of the batch was applied."""

    code = "COMMIT_FAILED"


class CommitOutcomeUnknown(CommitFailed):
    """The Kafka transaction's outcome is unknown (the commit timed out): it may have committed.

    Retrying is safe only after the writer was re-created (``init_transactions`` settles the
    open transaction) and the shard has re-read its partition up to the last stable offset.
    """

    code = "COMMIT_UNKNOWN"


class ServiceUnavailable(Retryable):
    """A backing service (Kafka, PostgreSQL, a shard actor) could not be reached."""

    code = "UNAVAILABLE"


class PartitionMoved(ServiceUnavailable):
    """The shard actor asked no longer serves the partition (reassigned, released or fenced).

    Nothing of the call was applied: the router looks the owner up again and resends.
    """

    code = "PARTITION_MOVED"


# --- infrastructure errors -----------------------------------------------------------------


class Fenced(EventrayError):
    """A newer writer with the same transactional id owns the partition; this one must stop."""

    code = "FENCED"


class UndecodableEvent(EventrayError):
    """A log record could not be decoded into a known event type and schema version."""

    code = "UNDECODABLE"


class WriteRejected(EventrayError):
    """The database refused the data (a constraint, an invalid value); resending fails the same way."""

    code = "WRITE_REJECTED"


class ConfigurationError(EventrayError):
    """The settings are inconsistent with the running system; the message says what to change."""

    code = "CONFIGURATION"


class AppInvalid(ConfigurationError):
    """The app declaration is not valid; the message says what to change."""

    code = "APP_INVALID"


class AppNotFound(AppInvalid):
    """The app's import path does not import, or names no attribute of its module."""

    code = "APP_NOT_FOUND"


class NotAnApp(AppInvalid):
    """The app's import path names something that is not an ``eventray.App``."""

    code = "NOT_AN_APP"


class DuplicateEventType(AppInvalid):
    """Two aggregates of one app have event classes of the same name (the tag stored in the log)."""

    code = "DUPLICATE_EVENT_TYPE"


class UnknownCommandType(AppInvalid):
    """A command type that no aggregate of the app handles."""

    code = "UNKNOWN_COMMAND_TYPE"


class SchemaMergeError(AppInvalid):
    """The app's GraphQL extension does not merge with the platform's schema."""

    code = "SCHEMA_MERGE"


class StackError(EventrayError):
    """The local dev stack could not be brought up; the message says what to do."""

    code = "STACK"
