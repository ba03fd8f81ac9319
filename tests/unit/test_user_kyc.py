"""Given/when/then for the User aggregate's identity verification (KYC) commands."""

from __future__ import annotations

import base64
import hashlib

import msgspec
import pytest

from eventray.aggregates.user import (
    MAX_IDENTITY_DOCUMENT_BYTES,
    USER,
    Events,
    IdentityAlreadyVerified,
    IdentityDocumentSubmitted,
    IdentityDocumentTooLarge,
    IdentityVerified,
    InvalidIdentityDocument,
    KycStatus,
    ProfileUpdated,
    RecordIdentityVerified,
    RejectIdentityVerification,
    SubmitIdentityDocument,
    UserDeactivated,
    UserDeactivatedError,
    UserRegistered,
    UserState,
    VerificationPending,
    VerificationRejected,
)
from eventray.platform.errors import InvalidCommand, NotFound
from eventray.platform.testing import scenario

ID = "user-1"
REGISTERED = UserRegistered(name="Ada Lovelace", email="ada@example.com")
IMAGE = b"\x89PNG\r\n\x1a\n-not-really-a-png"


def submit(data: bytes = IMAGE, *, raw: str | None = None) -> SubmitIdentityDocument:
    return SubmitIdentityDocument(aggregate_id=ID, image_base64=base64.b64encode(data).decode() if raw is None else raw)


def submitted(n: int = 1, name: str = "Ada Lovelace", data: bytes = IMAGE) -> IdentityDocumentSubmitted:
    return IdentityDocumentSubmitted(submission=n, name=name, image=data, sha256=hashlib.sha256(data).hexdigest())


def test_submit_records_the_document_with_the_current_name_and_sets_pending() -> None:
    state = scenario(USER).given(REGISTERED, ProfileUpdated(name="Ada King", bio="")).when(submit()).then(
        submitted(name="Ada King"))
    assert (state.kyc, state.kyc_submission) == (KycStatus.PENDING, 1)


def test_surrounding_whitespace_is_ignored_and_the_limit_is_inclusive() -> None:
    big = b"x" * MAX_IDENTITY_DOCUMENT_BYTES
    scenario(USER).given(REGISTERED).when(submit(raw=f"  {base64.b64encode(big).decode()}\n")).then(submitted(data=big))


@pytest.mark.parametrize(("raw", "error", "code"), [
    ("", InvalidIdentityDocument, "INVALID_IDENTITY_DOCUMENT"),
    ("   ", InvalidIdentityDocument, "INVALID_IDENTITY_DOCUMENT"),
    ("not base64!", InvalidIdentityDocument, "INVALID_IDENTITY_DOCUMENT"),
    ("aGVsbG8", InvalidIdentityDocument, "INVALID_IDENTITY_DOCUMENT"),  # padding missing
    ("aGVs\nbG8=", InvalidIdentityDocument, "INVALID_IDENTITY_DOCUMENT"),  # a line break inside
    (base64.b64encode(b"x" * (MAX_IDENTITY_DOCUMENT_BYTES + 1)).decode(), IdentityDocumentTooLarge,
     "IDENTITY_DOCUMENT_TOO_LARGE"),
    ("A" * 10_000_000, IdentityDocumentTooLarge, "IDENTITY_DOCUMENT_TOO_LARGE"),  # refused before decoding
])
def test_bad_documents_get_a_typed_error_with_a_code(raw: str, error: type, code: str) -> None:
    err = scenario(USER).given(REGISTERED).when(submit(raw=raw)).raises(error)
    assert isinstance(err, InvalidCommand) and err.code == code  # type: ignore[attr-defined]
    assert err.details["field"] == "image_base64"  # type: ignore[attr-defined]


def test_one_verification_at_a_time_and_none_after_verified() -> None:
    scenario(USER).given(REGISTERED, submitted()).when(submit()).raises(VerificationPending)
    verified = IdentityVerified(submission=1, matched_name="Ada Lovelace")
    state = scenario(USER).given(REGISTERED, submitted()).when(
        RecordIdentityVerified(aggregate_id=ID, submission=1, matched_name="Ada Lovelace")).then(verified)
    assert state.kyc is KycStatus.VERIFIED
    scenario(USER).given(REGISTERED, submitted(), verified).when(submit()).raises(IdentityAlreadyVerified)


def test_after_a_rejection_the_next_submission_gets_the_next_number() -> None:
    rejected = VerificationRejected(submission=1, reason="no_face", detail="no face found")
    state = scenario(USER).given(REGISTERED, submitted()).when(RejectIdentityVerification(
        aggregate_id=ID, submission=1, reason="no_face", detail=" no face found ")).then(rejected)
    assert (state.kyc, state.kyc_reason) == (KycStatus.REJECTED, "no_face")
    state = scenario(USER).given(REGISTERED, submitted(), rejected).when(submit()).then(submitted(2))
    assert (state.kyc, state.kyc_submission, state.kyc_reason) == (KycStatus.PENDING, 2, "")


def test_an_outcome_for_a_submission_that_is_not_pending_is_a_no_op() -> None:
    verified = IdentityVerified(submission=1, matched_name="Ada Lovelace")
    record = RecordIdentityVerified(aggregate_id=ID, submission=1, matched_name="Ada Lovelace")
    reject = RejectIdentityVerification(aggregate_id=ID, submission=1, reason="timed_out")
    scenario(USER).given(REGISTERED, submitted(), verified).when(record).then()  # a retried step
    scenario(USER).given(REGISTERED, submitted(), verified).when(reject).then()
    scenario(USER).given(REGISTERED).when(record).then()  # nothing submitted
    scenario(USER).given(REGISTERED, submitted(2)).when(reject).then()  # an older submission


def test_a_rejection_reason_must_be_known() -> None:
    scenario(USER).given(REGISTERED, submitted()).when(RejectIdentityVerification(
        aggregate_id=ID, submission=1, reason="bad vibes")).raises(InvalidCommand)


def test_missing_and_deactivated_users_are_refused() -> None:
    scenario(USER).when(submit()).raises(NotFound)
    scenario(USER).given(REGISTERED, UserDeactivated(reason="left")).when(submit()).raises(UserDeactivatedError)
    scenario(USER).given(REGISTERED, submitted(), UserDeactivated(reason="left")).when(
        RecordIdentityVerified(aggregate_id=ID, submission=1, matched_name="Ada")).raises(UserDeactivatedError)


def test_the_events_and_state_round_trip_and_old_snapshots_decode() -> None:
    decoder = msgspec.msgpack.Decoder(Events)
    for event in (submitted(), IdentityVerified(submission=1, matched_name="A"),
                  VerificationRejected(submission=1, reason="unreadable")):
        assert decoder.decode(msgspec.msgpack.encode(event)) == event
    # a snapshot written before KYC existed has no kyc fields: it decodes to unverified
    old = msgspec.msgpack.encode({"name": "Ada", "email": "a@b.cd", "bio": "", "status": "active"})
    state = msgspec.msgpack.decode(old, type=UserState)
    assert (state.kyc, state.kyc_submission, state.kyc_reason) == (KycStatus.UNVERIFIED, 0, "")
