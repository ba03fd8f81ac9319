"""The User aggregate: registration, profile, email, support, identity verification, deactivation.

Decisions documented here so callers and read models can rely on them:

* Check order in ``decide``: existence first (``NotFound`` / ``AlreadyExists``), then the
  lifecycle (``UserDeactivatedError``), then the command's fields (``InvalidCommand``
  subclasses), then no-op detection. A command for a missing or deactivated user fails the
  same way whatever its payload.
* Values are normalised before they are recorded: names and bios are stripped, emails are
  stripped and lowercased. Events always carry the normalised value.
* Changing the email to the current one (after normalisation) is a **no-op**: no event, no
  error. The same holds for an ``UpdateProfile`` that changes nothing. Retried or duplicated
  UI submissions then succeed quietly instead of failing.
* A deactivated user is final: every later command, ``DeactivateUser`` included, raises
  :class:`UserDeactivatedError`; ``RegisterUser`` raises ``AlreadyExists`` (the id is taken).
* A support message (``SendSupportMessage``) is recorded as ``SupportMessageSent`` and leaves
  the user's state as it is; its id is ``<user id>/<version>`` (the envelope's), which the
  command's answer gives. The body must hold a word (two letters or more): the support inbox
  analyses each message with the text models, which refuse a text without one.
* Identity verification (KYC): ``SubmitIdentityDocument`` records the document itself, as
  bytes, in ``IdentityDocumentSubmitted`` (with the user's current name, for the KYC saga to
  match, and the document's SHA-256): at most :data:`MAX_IDENTITY_DOCUMENT_BYTES` (256 KiB)
  decoded, so the event stays well under Kafka's 1 MiB message size with room for the envelope.
  The API sends it base64 (standard alphabet, padded; surrounding whitespace is ignored). An
  empty, non-base64 or too large document raises :class:`InvalidIdentityDocument` or
  :class:`IdentityDocumentTooLarge`. Each submission gets the next number (``submission``, 1,
  2, ...). While one is being verified (``PENDING``) another is refused
  (:class:`VerificationPending`); a verified user cannot submit again
  (:class:`IdentityAlreadyVerified`); after a rejection the user may submit again. The KYC
  saga ends each submission with ``RecordIdentityVerified`` or ``RejectIdentityVerification``
  (no mutation: saga steps only); either for a submission that is not the pending one is a
  no-op, so a retried step never records twice. The KYC status check comes right after the
  lifecycle check, before the document's own checks.
* Events do not repeat the aggregate id: the event envelope carries it (it is the Kafka key).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeAlias

import msgspec

from eventray.platform.domain import AggregateType, Command, Event
from eventray.platform.errors import AlreadyExists, InvalidCommand, NotFound, RuleViolation

from ._validation import text

__all__ = [
    "USER",
    "ChangeEmail",
    "Commands",
    "DeactivateUser",
    "EmailChanged",
    "Events",
    "IdentityAlreadyVerified",
    "IdentityDocumentSubmitted",
    "IdentityDocumentTooLarge",
    "IdentityVerified",
    "InvalidIdentityDocument",
    "InvalidEmail",
    "InvalidName",
    "InvalidSupportMessage",
    "KycStatus",
    "MAX_BIO_LENGTH",
    "MAX_EMAIL_LENGTH",
    "MAX_IDENTITY_DOCUMENT_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_REASON_LENGTH",
    "MAX_SUPPORT_MESSAGE_LENGTH",
    "ProfileUpdated",
    "REJECTION_REASONS",
    "RecordIdentityVerified",
    "RegisterUser",
    "RejectIdentityVerification",
    "SendSupportMessage",
    "SubmitIdentityDocument",
    "SupportMessageSent",
    "UpdateProfile",
    "UserDeactivated",
    "UserDeactivatedError",
    "UserRegistered",
    "UserState",
    "UserStatus",
    "VerificationPending",
    "VerificationRejected",
    "decide",
    "evolve",
]

MAX_NAME_LENGTH = 100
#: RFC 5321 limits: 254 for the whole path, 64 for the local part.
MAX_EMAIL_LENGTH = 254
MAX_EMAIL_LOCAL_LENGTH = 64
MAX_BIO_LENGTH = 1000
MAX_REASON_LENGTH = 500
#: the text models' own limit (``Limits.max_text_chars``): every stored message can be analysed
MAX_SUPPORT_MESSAGE_LENGTH = 2000
#: the largest identity document, decoded: well under Kafka's default 1 MiB message size
MAX_IDENTITY_DOCUMENT_BYTES = 256 * 1024
#: its base64 length (4 characters per 3 bytes, padded)
_MAX_IDENTITY_DOCUMENT_BASE64 = 4 * ((MAX_IDENTITY_DOCUMENT_BYTES + 2) // 3)
#: why a verification can be rejected (``VerificationRejected.reason``)
REJECTION_REASONS = frozenset({"no_face", "name_mismatch", "unreadable", "timed_out"})

# Compiled once: decide runs on the shard's hot path.
# A pragmatic subset of RFC 5322 addr-spec, ASCII only: dot-atom local part, and a domain of
# at least two labels, each 1-63 chars of letters, digits and inner hyphens. Applied to the
# already lowercased address.
_EMAIL = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)


# --- errors --------------------------------------------------------------------------------


class InvalidName(InvalidCommand):
    """The name is empty, longer than 100 characters or holds control characters."""

    code = "INVALID_NAME"


class InvalidEmail(InvalidCommand):
    """The email address is not a valid address."""

    code = "INVALID_EMAIL"


class InvalidSupportMessage(InvalidCommand):
    """The support message is empty, holds no word, has control characters or is too long."""

    code = "INVALID_SUPPORT_MESSAGE"


class InvalidIdentityDocument(InvalidCommand):
    """The identity document is empty or not base64."""

    code = "INVALID_IDENTITY_DOCUMENT"


class IdentityDocumentTooLarge(InvalidIdentityDocument):
    """The identity document is larger than 256 KiB (decoded)."""

    code = "IDENTITY_DOCUMENT_TOO_LARGE"


class VerificationPending(RuleViolation):
    """A document of the user is being verified; wait for its outcome before sending another."""

    code = "VERIFICATION_PENDING"


class IdentityAlreadyVerified(RuleViolation):
    """The user's identity is verified already."""

    code = "IDENTITY_ALREADY_VERIFIED"


class UserDeactivatedError(RuleViolation):
    """The user is deactivated and can no longer be changed."""

    code = "USER_DEACTIVATED"


# --- commands ------------------------------------------------------------------------------
# Commands and events inherit frozen=True and tag=True from their bases; kw_only=True is per
# class in msgspec, so it is repeated here (two str fields or two ints must never be swapped
# by position). frozen=True is repeated too, so type checkers see it.


class RegisterUser(Command, frozen=True, kw_only=True):
    """Create the user ``aggregate_id``."""

    creates: ClassVar[bool] = True

    name: str
    email: str


class UpdateProfile(Command, frozen=True, kw_only=True):
    """Set the display name and, unless ``bio`` is ``None``, the bio (``""`` clears it)."""

    name: str
    bio: Annotated[str | None, msgspec.Meta(description="Left out: unchanged; empty: cleared.")] = None


class ChangeEmail(Command, frozen=True, kw_only=True):
    """Change the user's email address; the current address again is a no-op."""

    email: str


class DeactivateUser(Command, frozen=True, kw_only=True):
    """Deactivate the user for good, with a reason for the audit trail."""

    reason: str


class SendSupportMessage(Command, frozen=True, kw_only=True):
    """Send the bank's support a message (plain text, up to 2,000 characters, line breaks allowed)."""

    body: str


class SubmitIdentityDocument(Command, frozen=True, kw_only=True):
    """Submit an identity document (a photo or scan with the holder's face and name) for verification."""

    image_base64: Annotated[str, msgspec.Meta(
        description="The image (PNG, JPEG, ...), base64, at most 256 KiB decoded.")]


class RecordIdentityVerified(Command, frozen=True, kw_only=True):
    """The KYC saga verified ``submission``: record it (a saga step, no mutation)."""

    submission: int
    matched_name: str


class RejectIdentityVerification(Command, frozen=True, kw_only=True):
    """The KYC saga rejected ``submission`` for ``reason`` (one of ``REJECTION_REASONS``)."""

    submission: int
    reason: str
    detail: str = ""


Commands: TypeAlias = (RegisterUser | UpdateProfile | ChangeEmail | DeactivateUser | SendSupportMessage
                       | SubmitIdentityDocument | RecordIdentityVerified | RejectIdentityVerification)


# --- events --------------------------------------------------------------------------------


class UserRegistered(Event, frozen=True, kw_only=True):
    """A user was registered. ``email`` is lowercased, ``name`` stripped."""

    name: str
    email: str


class ProfileUpdated(Event, frozen=True, kw_only=True):
    """The profile changed; carries the full resulting profile, not a delta."""

    name: str
    bio: str


class EmailChanged(Event, frozen=True, kw_only=True):
    """The email changed. ``previous_email`` lets a uniqueness read model release it."""

    email: str
    previous_email: str


class UserDeactivated(Event, frozen=True, kw_only=True):
    """The user was deactivated; no further change is accepted."""

    reason: str


class SupportMessageSent(Event, frozen=True, kw_only=True):
    """The user wrote to support; ``body`` is stripped."""

    body: str


class IdentityDocumentSubmitted(Event, frozen=True, kw_only=True):
    """The user submitted identity document number ``submission``; it awaits verification.

    ``name`` is the user's name when it was submitted (what the document must show),
    ``image`` the document's bytes and ``sha256`` their hex digest.
    """

    submission: int
    name: str
    image: bytes
    sha256: str


class IdentityVerified(Event, frozen=True, kw_only=True):
    """Submission ``submission`` verified the user's identity; ``matched_name`` is the name it showed."""

    submission: int
    matched_name: str


class VerificationRejected(Event, frozen=True, kw_only=True):
    """Submission ``submission`` was rejected: ``reason`` is one of ``REJECTION_REASONS``."""

    submission: int
    reason: str
    detail: str = ""


Events: TypeAlias = (UserRegistered | ProfileUpdated | EmailChanged | UserDeactivated | SupportMessageSent
                     | IdentityDocumentSubmitted | IdentityVerified | VerificationRejected)
EVENT_TYPES: tuple[type[Event], ...] = (UserRegistered, ProfileUpdated, EmailChanged, UserDeactivated,
                                        SupportMessageSent, IdentityDocumentSubmitted, IdentityVerified,
                                        VerificationRejected)


# --- state ---------------------------------------------------------------------------------


class UserStatus(enum.Enum):
    """Lifecycle of a user."""

    ACTIVE = "active"
    DEACTIVATED = "deactivated"


class KycStatus(enum.Enum):
    """Where a user's identity verification stands."""

    UNVERIFIED = "unverified"
    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


class UserState(msgspec.Struct, frozen=True, kw_only=True):
    """A user's current state, as folded from its events (and stored in snapshots).

    ``kyc_submission`` is the number of the latest identity document submitted (0: none);
    ``kyc_reason`` is its rejection's reason while ``kyc`` is ``REJECTED`` (else empty).
    """

    name: str
    email: str
    bio: str = ""
    status: UserStatus = UserStatus.ACTIVE
    kyc: KycStatus = KycStatus.UNVERIFIED
    kyc_submission: int = 0
    kyc_reason: str = ""


# --- validation ----------------------------------------------------------------------------


def _name(value: str) -> str:
    return text(value, field="name", max_length=MAX_NAME_LENGTH, error=InvalidName)


def _email(value: str) -> str:
    if type(value) is not str:
        raise InvalidEmail("email must be a string", field="email")
    email = value.strip()
    # isascii before lower(): lower() maps some non-ASCII letters to ASCII (KELVIN SIGN -> k).
    if not email.isascii():
        raise InvalidEmail("email must be ASCII", field="email")
    email = email.lower()
    if (
        len(email) > MAX_EMAIL_LENGTH
        or not _EMAIL.fullmatch(email)
        or email.index("@") > MAX_EMAIL_LOCAL_LENGTH
    ):
        raise InvalidEmail(f"not a valid email address: {value[:MAX_EMAIL_LENGTH]!r}", field="email")
    return email


def _bio(value: str) -> str:
    return text(value, field="bio", max_length=MAX_BIO_LENGTH, required=False, multiline=True)


def _reason(value: str) -> str:
    return text(value, field="reason", max_length=MAX_REASON_LENGTH)


def _support_body(value: str) -> str:
    body = text(value, field="body", max_length=MAX_SUPPORT_MESSAGE_LENGTH, multiline=True,
                error=InvalidSupportMessage)
    if sum(ch.isalpha() for ch in body) < 2:
        raise InvalidSupportMessage("body must hold a word (two letters or more)", field="body")
    return body


def _identity_document(value: str) -> bytes:
    if type(value) is not str:
        raise InvalidIdentityDocument("image_base64 must be a string", field="image_base64")
    encoded = value.strip()
    if not encoded:
        raise InvalidIdentityDocument("image_base64 must not be empty", field="image_base64")
    if len(encoded) > _MAX_IDENTITY_DOCUMENT_BASE64:  # before decoding: never decode a huge string
        raise IdentityDocumentTooLarge(f"the document must be at most {MAX_IDENTITY_DOCUMENT_BYTES} bytes "
                                       "(256 KiB) decoded", field="image_base64")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidIdentityDocument("image_base64 is not base64 (standard alphabet, padded)",
                                      field="image_base64") from None
    if not data:
        raise InvalidIdentityDocument("image_base64 must not be empty", field="image_base64")
    if len(data) > MAX_IDENTITY_DOCUMENT_BYTES:
        raise IdentityDocumentTooLarge(f"the document must be at most {MAX_IDENTITY_DOCUMENT_BYTES} bytes "
                                       "(256 KiB) decoded", field="image_base64")
    return data


# --- decide --------------------------------------------------------------------------------


def _existing(state: UserState | None, command: Command) -> UserState:
    if state is None:
        raise NotFound(f"user {command.aggregate_id!r} does not exist", id=command.aggregate_id)
    if state.status is UserStatus.DEACTIVATED:
        raise UserDeactivatedError(
            f"user {command.aggregate_id!r} is deactivated", id=command.aggregate_id
        )
    return state


def _register(state: UserState | None, command: RegisterUser) -> tuple[Event, ...]:
    if state is not None:
        raise AlreadyExists(f"user {command.aggregate_id!r} already exists", id=command.aggregate_id)
    return (UserRegistered(name=_name(command.name), email=_email(command.email)),)


def _update_profile(state: UserState | None, command: UpdateProfile) -> tuple[Event, ...]:
    current = _existing(state, command)
    name = _name(command.name)
    bio = current.bio if command.bio is None else _bio(command.bio)
    if name == current.name and bio == current.bio:
        return ()
    return (ProfileUpdated(name=name, bio=bio),)


def _change_email(state: UserState | None, command: ChangeEmail) -> tuple[Event, ...]:
    current = _existing(state, command)
    email = _email(command.email)
    if email == current.email:
        return ()
    return (EmailChanged(email=email, previous_email=current.email),)


def _deactivate(state: UserState | None, command: DeactivateUser) -> tuple[Event, ...]:
    _existing(state, command)
    return (UserDeactivated(reason=_reason(command.reason)),)


def _send_support_message(state: UserState | None, command: SendSupportMessage) -> tuple[Event, ...]:
    _existing(state, command)
    return (SupportMessageSent(body=_support_body(command.body)),)


def _submit_identity_document(state: UserState | None, command: SubmitIdentityDocument) -> tuple[Event, ...]:
    current = _existing(state, command)
    if current.kyc is KycStatus.PENDING:
        raise VerificationPending(f"document {current.kyc_submission} of user {command.aggregate_id!r} is being "
                                  "verified; wait for its outcome", id=command.aggregate_id)
    if current.kyc is KycStatus.VERIFIED:
        raise IdentityAlreadyVerified(f"user {command.aggregate_id!r} is verified already", id=command.aggregate_id)
    image = _identity_document(command.image_base64)
    return (IdentityDocumentSubmitted(submission=current.kyc_submission + 1, name=current.name, image=image,
                                      sha256=hashlib.sha256(image).hexdigest()),)


def _pending(current: UserState, submission: int) -> bool:
    """Whether ``submission`` is the one awaiting its outcome (else a saga step is late: a no-op)."""
    return current.kyc is KycStatus.PENDING and submission == current.kyc_submission


def _record_verified(state: UserState | None, command: RecordIdentityVerified) -> tuple[Event, ...]:
    current = _existing(state, command)
    name = _name(command.matched_name)
    if not _pending(current, command.submission):
        return ()
    return (IdentityVerified(submission=command.submission, matched_name=name),)


def _reject_verification(state: UserState | None, command: RejectIdentityVerification) -> tuple[Event, ...]:
    current = _existing(state, command)
    if command.reason not in REJECTION_REASONS:
        raise InvalidCommand(f"reason must be one of {sorted(REJECTION_REASONS)}, got {command.reason!r}",
                             field="reason")
    detail = text(command.detail, field="detail", max_length=MAX_REASON_LENGTH, required=False)
    if not _pending(current, command.submission):
        return ()
    return (VerificationRejected(submission=command.submission, reason=command.reason, detail=detail),)


_DECIDERS: dict[type[Command], Callable[[UserState | None, Any], tuple[Event, ...]]] = {
    RegisterUser: _register,
    UpdateProfile: _update_profile,
    ChangeEmail: _change_email,
    DeactivateUser: _deactivate,
    SendSupportMessage: _send_support_message,
    SubmitIdentityDocument: _submit_identity_document,
    RecordIdentityVerified: _record_verified,
    RejectIdentityVerification: _reject_verification,
}


def decide(state: UserState | None, command: Commands) -> tuple[Event, ...]:
    """Decide the events for ``command`` against ``state`` (``None``: not registered).

    Raises:
        NotFound: the user does not exist (any command but ``RegisterUser``).
        AlreadyExists: ``RegisterUser`` for an existing user.
        UserDeactivatedError: the user is deactivated.
        VerificationPending, IdentityAlreadyVerified: ``SubmitIdentityDocument`` while a document
            is being verified, or once verified.
        InvalidName, InvalidEmail, InvalidSupportMessage, InvalidIdentityDocument,
            IdentityDocumentTooLarge, InvalidCommand: a field is not valid.
    """
    decider = _DECIDERS.get(type(command))
    if decider is None:
        raise InvalidCommand(f"User does not handle {type(command).__name__}")
    return decider(state, command)


# --- evolve --------------------------------------------------------------------------------


def _registered(state: UserState | None, event: UserRegistered) -> UserState:
    return UserState(name=event.name, email=event.email)


def _profile_updated(state: UserState, event: ProfileUpdated) -> UserState:
    return msgspec.structs.replace(state, name=event.name, bio=event.bio)


def _email_changed(state: UserState, event: EmailChanged) -> UserState:
    return msgspec.structs.replace(state, email=event.email)


def _deactivated(state: UserState, event: UserDeactivated) -> UserState:
    return msgspec.structs.replace(state, status=UserStatus.DEACTIVATED)


def _support_message_sent(state: UserState, event: SupportMessageSent) -> UserState:
    return state  # the inbox is a read model; the user's state does not hold messages


def _document_submitted(state: UserState, event: IdentityDocumentSubmitted) -> UserState:
    return msgspec.structs.replace(state, kyc=KycStatus.PENDING, kyc_submission=event.submission,
                                   kyc_reason="")


def _identity_verified(state: UserState, event: IdentityVerified) -> UserState:
    return msgspec.structs.replace(state, kyc=KycStatus.VERIFIED)


def _verification_rejected(state: UserState, event: VerificationRejected) -> UserState:
    return msgspec.structs.replace(state, kyc=KycStatus.REJECTED, kyc_reason=event.reason)


_EVOLVERS: dict[type[Event], Callable[[Any, Any], UserState]] = {
    UserRegistered: _registered,
    ProfileUpdated: _profile_updated,
    EmailChanged: _email_changed,
    UserDeactivated: _deactivated,
    SupportMessageSent: _support_message_sent,
    IdentityDocumentSubmitted: _document_submitted,
    IdentityVerified: _identity_verified,
    VerificationRejected: _verification_rejected,
}


def evolve(state: UserState | None, event: Events) -> UserState | None:
    """Apply ``event`` to ``state``. Never fails.

    An event of another aggregate, or a change event before ``UserRegistered`` (impossible in
    a well-formed log), leaves the state as it is.
    """
    evolver = _EVOLVERS.get(type(event))
    if evolver is None or (state is None and evolver is not _registered):
        return state
    return evolver(state, event)


USER: AggregateType[UserState] = AggregateType(
    name="User",
    state_type=UserState,
    decide=decide,
    evolve=evolve,
    commands=(RegisterUser, UpdateProfile, ChangeEmail, DeactivateUser, SendSupportMessage, SubmitIdentityDocument,
              RecordIdentityVerified, RejectIdentityVerification),
    events=EVENT_TYPES,
)
