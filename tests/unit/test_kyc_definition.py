"""Given/when/then for the KYC saga (a pure state machine), its name matching, and the bank's
model adapters with a fake model client: verified, rejected, timed out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from eventray.aggregates.user import (
    IdentityDocumentSubmitted,
    IdentityVerified,
    RecordIdentityVerified,
    RejectIdentityVerification,
    UserRegistered,
    VerificationRejected,
)
from eventray.platform.domain import InvalidCommand
from eventray.platform.errors import InvalidImage, ServiceUnavailable
from eventray.platform.sagas import (
    ArmDeadline, Ask, AskFailed, CommandFailed, DeadlinePassed, LogEvent, Replied, SendCommand,
)
from eventray.platform.sagas.testing import saga_scenario
from eventray.sagas.kyc import (
    DocumentImage, FacesFound, Kyc, KycPolicy, KycRequest, TextRead, Unreadable, name_matches, normalise,
)
from eventray.serving.bank.kyc import ModelFaceCounter, ModelTextReader, kyc_policy

U, NOW = "user-1", 1_000_000
SAGA_ID = "kyc:user-1:1"
POLICY = KycPolicy(step_timeout_ms=1_000, max_attempts=3, backoff_base_ms=100, backoff_max_ms=1_000)
SUBMITTED = IdentityDocumentSubmitted(submission=1, name="Ada Lovelace", image=b"img", sha256="ab")
REQ = Kyc(POLICY).start_request(U, SUBMITTED, correlation_id="req-7")
TEXT = Replied(step="ocr", attempt=1, value=TextRead(lines=("PASSPORT", "LOVELACE", "ADA", "P<GBR")))
FACE = Replied(step="faces", attempt=1, value=FacesFound(count=1))
VERIFIED = LogEvent(aggregate_id=U, event=IdentityVerified(submission=1, matched_name="Ada Lovelace"))


def saga():
    return saga_scenario(Kyc(POLICY), now_ms=NOW)


def rejected_event(reason: str) -> LogEvent:
    return LogEvent(aggregate_id=U, event=VerificationRejected(submission=1, reason=reason))


# --- starting from the log -------------------------------------------------------------------


def test_a_submitted_document_starts_its_saga_and_nothing_else_does() -> None:
    definition = Kyc(POLICY)
    assert REQ == KycRequest(user_id=U, submission=1, name="Ada Lovelace", image=b"img", sha256="ab",
                             correlation_id="req-7")
    assert definition.saga_id(REQ) == SAGA_ID
    assert definition.start_request(U, UserRegistered(name="A", email="a@b.cd")) is None
    assert definition.correlate_record(U, VERIFIED.event) == SAGA_ID
    assert definition.correlate_record(U, SUBMITTED) is None
    assert IdentityDocumentSubmitted in definition.event_types


def test_start_asks_ocr_with_the_document_and_arms_the_step_deadline() -> None:
    decision = Kyc(POLICY).start(REQ, NOW)
    assert decision.state.status == "reading" and decision.state.image == b"img"
    ask, deadline = decision.effects
    assert ask == Ask(step="ocr", attempt=1, service="ocr",
                      request=DocumentImage(user_id=U, submission=1, image=b"img"))
    assert deadline == ArmDeadline(name="step", at_ms=NOW + 1_000)


def test_start_refuses_a_request_that_is_no_submission() -> None:
    for bad in (KycRequest(user_id=U, submission=0, name="A", image=b"x"),
                KycRequest(user_id=U, submission=1, name="A", image=b"")):
        with pytest.raises(InvalidCommand):
            Kyc(POLICY).start(bad, NOW)


# --- verified ----------------------------------------------------------------------------------


def test_verified_read_name_then_face_then_record() -> None:
    d = saga().given(REQ).when(TEXT).then(status="detecting_face", effects=[Ask, ArmDeadline])
    assert d.effects[0].service == "faces"
    d = saga().given(REQ, TEXT).when(FACE).then(status="verifying", faces=1, image=b"",
                                                 effects=[SendCommand, ArmDeadline])
    command = d.effects[0].command
    assert command == RecordIdentityVerified(aggregate_id=U, command_id=f"{SAGA_ID}:verify:1", submission=1,
                                             matched_name="Ada Lovelace", subject="saga:KYC",
                                             correlation_id="req-7")
    d = saga().given(REQ, TEXT, FACE).when(VERIFIED).then(status="verified", effects=[])
    assert [s.step for s in d.state.steps if s.result == "ok"] == ["ocr", "faces", "verify"]


# --- rejected ----------------------------------------------------------------------------------


def test_a_name_mismatch_is_rejected() -> None:
    wrong = Replied(step="ocr", attempt=1, value=TextRead(lines=("PASSPORT", "GRACE HOPPER")))
    d = saga().given(REQ).when(wrong).then(status="rejecting", reason="name_mismatch", image=b"")
    command = d.effects[0].command
    assert isinstance(command, RejectIdentityVerification) and command.reason == "name_mismatch"
    assert command.command_id == f"{SAGA_ID}:reject:1"
    saga().given(REQ, wrong).when(rejected_event("name_mismatch")).then(status="rejected", reason="name_mismatch")


def test_no_face_is_rejected() -> None:
    none = Replied(step="faces", attempt=1, value=FacesFound(count=0))
    d = saga().given(REQ, TEXT).when(none).then(status="rejecting", reason="no_face", faces=0)
    assert d.effects[0].command.reason == "no_face"


@pytest.mark.parametrize("answer", [
    Replied(step="ocr", attempt=1, value=Unreadable(detail="MODEL_INPUT_IMAGE: not an image")),
    Replied(step="ocr", attempt=1, value=TextRead(lines=())),
    Replied(step="ocr", attempt=1, value=TextRead(lines=(" ", ""))),
    Replied(step="ocr", attempt=1, value="something else"),
    AskFailed(step="ocr", attempt=1, message="refused", retryable=False),
])
def test_an_unreadable_document_is_rejected(answer) -> None:
    saga().given(REQ).when(answer).then(status="rejecting", reason="unreadable")


def test_a_detail_with_line_breaks_is_sent_on_one_line() -> None:
    bad = Replied(step="ocr", attempt=1, value=Unreadable(detail="line one\nline\x00two"))
    d = saga().given(REQ).when(bad).then(status="rejecting")
    assert d.effects[0].command.detail == "line one line two"


# --- timed out -----------------------------------------------------------------------------------


def test_a_step_without_an_answer_is_retried_with_backoff_then_rejected_timed_out() -> None:
    late1 = NOW + 1_000
    d = saga().given(REQ).when(DeadlinePassed(name="step"), at_ms=late1).then(status="reading", attempt=2)
    assert d.effects[0].attempt == 2 and d.effects[0].delay_ms == 100
    assert d.effects[1] == ArmDeadline(name="step", at_ms=late1 + 100 + 1_000)
    late2 = late1 + 1_100
    s = saga().given(REQ, (DeadlinePassed(name="step"), late1))
    d = s.when(DeadlinePassed(name="step"), at_ms=late2).then(attempt=3)
    assert d.effects[0].delay_ms == 200
    late3 = late2 + 1_200
    s = saga().given(REQ, (DeadlinePassed(name="step"), late1), (DeadlinePassed(name="step"), late2))
    d = s.when(DeadlinePassed(name="step"), at_ms=late3).then(status="rejecting", reason="timed_out", image=b"")
    assert d.effects[0].command.reason == "timed_out"


def test_an_early_deadline_and_stale_answers_are_ignored() -> None:
    saga().given(REQ).when(DeadlinePassed(name="step"), at_ms=NOW + 999).ignored()
    s = saga().given(REQ, (DeadlinePassed(name="step"), NOW + 1_000))
    s.when(TEXT).ignored()  # attempt 1 answered after attempt 2 was asked
    saga().given(REQ).when(FACE).ignored()  # another step's answer
    saga().given(REQ, TEXT, FACE, VERIFIED).when(VERIFIED).ignored()
    saga().given(REQ, TEXT, FACE).when(LogEvent(aggregate_id="user-2", event=VERIFIED.event)).ignored()
    saga().given(REQ, TEXT, FACE).when(rejected_event("no_face")).ignored()  # not what it is recording


def test_an_unavailable_service_is_retried_then_rejected_timed_out() -> None:
    down = lambda n: AskFailed(step="faces", attempt=n, message="model down")  # noqa: E731
    saga().given(REQ, TEXT).when(down(1)).then(status="detecting_face", attempt=2)
    saga().given(REQ, TEXT, down(1), down(2)).when(down(3)).then(status="rejecting", reason="timed_out")


def test_recording_that_cannot_complete_needs_attention() -> None:
    busy = lambda n: CommandFailed(step="verify", attempt=n, error_code="UNAVAILABLE",  # noqa: E731
                                   error_type="ServiceUnavailable", message="busy", retryable=True)
    saga().given(REQ, TEXT, FACE).when(busy(1)).then(status="verifying", attempt=2)
    d = saga().given(REQ, TEXT, FACE, busy(1), busy(2)).when(busy(3)).then(status="failed_needs_attention")
    assert Kyc(POLICY).needs_attention(d.state) and Kyc(POLICY).is_terminal(d.state)
    gone = CommandFailed(step="verify", attempt=1, error_code="USER_DEACTIVATED", error_type="UserDeactivatedError",
                         message="deactivated", retryable=False)
    saga().given(REQ, TEXT, FACE).when(gone).then(status="failed_needs_attention")


def test_resume_re_issues_the_current_step() -> None:
    definition = Kyc(POLICY)
    state = saga().given(REQ, TEXT).state
    assert [type(e) for e in definition.resume(state, NOW)] == [Ask, ArmDeadline]
    assert definition.resume(saga().given(REQ, TEXT, FACE, VERIFIED).state, NOW) == ()
    assert definition.index_keys(state) == (U,)


# --- name matching -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "lines", "match"), [
    ("Ada Lovelace", ["ADA LOVELACE"], True),
    ("Ada Lovelace", ["LOVELACE", "ADA"], True),  # surname first, on its own line
    ("Ada Lovelace", ["ADALOVELACE"], True),  # the OCR dropped the space
    ("Ada  Lovelace", ["a d a  l o v e l a c e"], True),  # or added some
    ("Zoë O'Brien", ["ZOE OBRIEN"], True),  # accents and punctuation
    ("Ada Lovelace", ["ADA BYRON"], False),
    ("Ada Lovelace", [], False),
    ("", ["ANYTHING"], False),
])
def test_name_matching(name: str, lines: list[str], match: bool) -> None:
    assert name_matches(name, lines) is match


def test_normalise() -> None:
    assert normalise("  Zoë O'Brien-Smith ") == "zoeobriensmith"


# --- the bank's model adapters (a fake client) -----------------------------------------------------


class FakeModels:
    def __init__(self, answers: dict[bytes, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, bytes]] = []

    async def predict(self, model: str, payload: bytes) -> dict[str, Any]:
        self.calls.append((model, payload))
        answer = self.answers[payload]
        if isinstance(answer, Exception):
            raise answer
        return answer


def doc(image: bytes) -> DocumentImage:
    return DocumentImage(user_id=U, submission=1, image=image)


def test_the_ocr_adapter_reads_lines_and_answers_unreadable_for_a_refused_image() -> None:
    models = FakeModels({b"a": {"lines": [{"text": "ADA", "score": 0.9, "box": {}}]},
                         b"b": InvalidImage("not an image", field="image")})
    got = asyncio.run(ModelTextReader(client=models).read([doc(b"a"), doc(b"b")]))
    assert got[0] == TextRead(lines=("ADA",))
    assert isinstance(got[1], Unreadable) and got[1].detail.startswith("MODEL_INPUT_IMAGE")
    assert [m for m, _ in models.calls] == ["ocr", "ocr"]


def test_the_faces_adapter_counts_and_raises_unavailable_when_the_model_fails() -> None:
    models = FakeModels({b"a": {"detections": [{"label": "face"}, {"label": "face"}]}, b"b": RuntimeError("boom")})
    assert asyncio.run(ModelFaceCounter(client=models).count([doc(b"a")])) == [FacesFound(count=2)]
    with pytest.raises(ServiceUnavailable):
        asyncio.run(ModelFaceCounter(client=models).count([doc(b"a"), doc(b"b")]))


def test_the_policy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTRAY_KYC_MAX_ATTEMPTS", "7")
    assert kyc_policy().max_attempts == 7
    assert kyc_policy(step_timeout_ms=5).step_timeout_ms == 5


def test_a_customer_submits_for_themselves_and_staff_for_anyone() -> None:
    from eventray.aggregates.user import SubmitIdentityDocument
    from eventray.platform.errors import Forbidden
    from eventray.serving.api.principal import Principal
    from eventray.serving.bank.policy import RULES

    rule = RULES[SubmitIdentityDocument]
    command = SubmitIdentityDocument(aggregate_id=U, image_base64="aGk=")
    for principal in (Principal(subject=U, role="customer"), Principal(subject="t", role="teller"),
                      Principal(subject="a", role="admin")):
        asyncio.run(rule(principal, command, {}))
    for principal in (Principal(subject="user-2", role="customer"), Principal(subject=None, role="anonymous")):
        with pytest.raises(Forbidden):
            asyncio.run(rule(principal, command, {}))
    assert RecordIdentityVerified not in RULES and RejectIdentityVerification not in RULES  # saga steps only


def test_sagas_start_by_request_unless_they_say_otherwise_and_never_share_a_transactional_id() -> None:
    from types import SimpleNamespace

    from eventray.platform.sagas.composition import transactional_id
    from eventray.platform.sagas.settings import SagaSettings
    from eventray.sagas.transfer_money import TransferMoney

    assert TransferMoney().start_request(U, SUBMITTED) is None  # the default: no saga starts from an event
    rt, ss = SimpleNamespace(topic="t"), SagaSettings()
    assert transactional_id(rt, ss, "KYC", 0) != transactional_id(rt, ss, "TransferMoney", 0)
