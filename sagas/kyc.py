"""KYC: verify a user's identity document with OCR and face detection, then record the outcome.

The saga starts from the log, not from a request: each ``IdentityDocumentSubmitted`` of a
user starts the saga ``kyc:<user id>:<submission>`` (:meth:`Kyc.start_request`), exactly once
(the coordinator starts it in the transaction that consumes the event). Submissions logged
before the KYC coordinators first ran are not theirs (a new coordinator group starts at the
log's end), as for every saga.

Steps (``status`` while the step runs):

1. ``reading`` - ask the ``ocr`` service for the document's text lines. No text, or an image
   the service cannot read, rejects with ``unreadable``; text without the user's name rejects
   with ``name_mismatch``;
2. ``detecting_face`` - ask the ``faces`` service how many faces the document shows; none
   rejects with ``no_face``;
3. ``verifying`` - ``RecordIdentityVerified`` on the user, or ``rejecting`` -
   ``RejectIdentityVerification`` with the reason;
4. ``verified`` or ``rejected``, once the user's ``IdentityVerified`` / ``VerificationRejected``
   is in the log (success is learned from the log, never from a reply).

Decisions:

* Name matching (:func:`name_matches`): the registered name (the one the event carries: the
  user's name when they submitted) and the OCR text are normalised - Unicode NFKD, accents
  dropped, case folded, everything but letters and digits removed, so spaces the OCR dropped
  or added do not matter - and every word of the name must occur in the document's text
  (all lines together: documents print surname and given names on separate lines, in either
  order).
* Services answer with data: :class:`TextRead`, :class:`FacesFound`, or :class:`Unreadable`
  for a document the model refuses (not an image, too large). A service that raises is
  unavailable: the step is retried.
* Deadlines and retries as in TransferMoney: each step has a deadline (``step_timeout_ms``);
  a step that fails retryably or does not answer in time is retried with a new attempt
  (``<saga id>:<step>:<attempt>``) after an exponential backoff, up to ``max_attempts``. When
  the attempts of ``reading`` or ``detecting_face`` run out the submission is **rejected with
  reason** ``timed_out`` (the user is not left pending: they can submit again). When the
  attempts of recording the outcome run out, or the user refuses it (deactivated meanwhile),
  the saga ends ``failed_needs_attention``: nothing more it can do.
* The document's bytes are in the saga state only while it is read (``reading`` and
  ``detecting_face``, whose retries need them after a restart); from then on the state keeps
  only its SHA-256, so ended sagas hold no documents.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec

from eventray.aggregates.user import (
    MAX_NAME_LENGTH,
    MAX_REASON_LENGTH,
    IdentityDocumentSubmitted,
    IdentityVerified,
    RecordIdentityVerified,
    RejectIdentityVerification,
    VerificationRejected,
)
from eventray.platform.domain import Event, InvalidCommand
from eventray.platform.sagas.definition import (
    ArmDeadline,
    Ask,
    AskFailed,
    CommandFailed,
    DeadlinePassed,
    Decision,
    Effect,
    LogEvent,
    Replied,
    SagaDefinition,
    SendCommand,
    Signal,
    command_id,
)
from eventray.sagas.transfer_money import StepRecord

__all__ = [
    "DocumentImage", "FacesFound", "Kyc", "KycPolicy", "KycRequest", "KycState", "KycStep", "TERMINAL", "TextRead",
    "Unreadable", "name_matches", "normalise",
]

TERMINAL = frozenset({"verified", "rejected", "failed_needs_attention"})
_STEP = {"reading": "ocr", "detecting_face": "faces", "verifying": "verify", "rejecting": "reject"}
_ANALYSING = frozenset({"reading", "detecting_face"})
_WORD = re.compile(r"[^\W_]+")  # a run of letters or digits
# what the User aggregate refuses in a detail: controls, line separators, bidi overrides
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


class KycRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What starts a verification: the user's submitted document (from ``IdentityDocumentSubmitted``)."""

    user_id: str
    submission: int
    name: str
    image: bytes
    sha256: str = ""
    correlation_id: str | None = None


class DocumentImage(msgspec.Struct, frozen=True, kw_only=True):
    """What the ``ocr`` and ``faces`` steps ask about."""

    user_id: str
    submission: int
    image: bytes


class TextRead(msgspec.Struct, frozen=True, kw_only=True):
    """The ``ocr`` service's answer: the text lines read, top to bottom."""

    lines: tuple[str, ...]


class FacesFound(msgspec.Struct, frozen=True, kw_only=True):
    """The ``faces`` service's answer: how many faces the document shows."""

    count: int


class Unreadable(msgspec.Struct, frozen=True, kw_only=True):
    """A service's answer for a document it cannot read (not an image, too large, ...)."""

    detail: str


#: one line of a verification's audit trail: the same record as a transfer's
KycStep = StepRecord


class KycState(msgspec.Struct, frozen=True, kw_only=True):
    """A verification saga's state (stored, whole, with every transition in the saga topic)."""

    saga_id: str
    user_id: str
    submission: int
    name: str
    status: str
    step: str
    attempt: int
    submitted_at_ms: int
    updated_at_ms: int
    step_deadline_ms: int | None = None
    #: the document, while it is read; empty afterwards
    image: bytes = b""
    sha256: str = ""
    faces: int | None = None
    #: the rejection reason (``REJECTION_REASONS``) or why a person must look
    reason: str | None = None
    detail: str = ""
    steps: tuple[KycStep, ...] = ()
    correlation_id: str | None = None


class KycPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Timeouts and retries of the KYC steps (what the app's factory reads from its settings)."""

    step_timeout_ms: int = 10_000
    max_attempts: int = 4
    backoff_base_ms: int = 200
    backoff_max_ms: int = 5_000


def normalise(text: str) -> str:
    """``text`` without accents, case, spaces or punctuation: ``"Zoë O'Brien"`` -> ``"zoeobrien"``."""
    return "".join(_WORD.findall(_fold(text)))


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def name_matches(name: str, lines: Sequence[str]) -> bool:
    """Whether every word of ``name`` occurs in the normalised text of ``lines`` (see the module)."""
    words = _WORD.findall(_fold(name))
    text = normalise(" ".join(lines))
    return bool(words) and all(w in text for w in words)


def _clean(detail: str, limit: int) -> str:
    """``detail`` on one line, without control characters, at most ``limit`` characters."""
    return " ".join(_CONTROL.sub(" ", detail).split())[:limit]


def _backoff(policy: KycPolicy, attempt: int) -> int:
    """Delay before ``attempt`` (2, 3, ...): base * 2^(attempt-2), capped."""
    return min(policy.backoff_max_ms, policy.backoff_base_ms * 2 ** max(0, attempt - 2))


class Kyc(SagaDefinition[KycState]):
    """The identity verification saga. Pure: ``policy`` is its only configuration."""

    name = "KYC"
    state_type = KycState
    request_type = KycRequest
    event_types: ClassVar[tuple[type[Event], ...]] = (IdentityDocumentSubmitted, IdentityVerified,
                                                      VerificationRejected)

    def __init__(self, policy: KycPolicy | None = None) -> None:
        self.policy = policy or KycPolicy()

    # --- identity ----------------------------------------------------------------------------

    @staticmethod
    def id_of(user_id: str, submission: int) -> str:
        """The saga id of a user's submission: ``kyc:<user id>:<submission>``."""
        return f"kyc:{user_id}:{submission}"

    def saga_id(self, request: KycRequest) -> str:
        return self.id_of(request.user_id, request.submission)

    def start_request(self, aggregate_id: str, event: Event, *, correlation_id: str | None = None,
                      subject: str | None = None) -> KycRequest | None:
        if not isinstance(event, IdentityDocumentSubmitted):
            return None
        return KycRequest(user_id=aggregate_id, submission=event.submission, name=event.name, image=event.image,
                          sha256=event.sha256, correlation_id=correlation_id)

    def correlate(self, event: Event) -> str | None:
        return None  # the saga id needs the user id: correlate_record

    def correlate_record(self, aggregate_id: str, event: Event) -> str | None:
        if isinstance(event, (IdentityVerified, VerificationRejected)):
            return self.id_of(aggregate_id, event.submission)
        return None

    def is_terminal(self, state: KycState) -> bool:
        return state.status in TERMINAL

    def status(self, state: KycState) -> str:
        return state.status

    def index_keys(self, state: KycState) -> tuple[str, ...]:
        return (state.user_id,)

    def needs_attention(self, state: KycState) -> bool:
        return state.status == "failed_needs_attention"

    # --- start -------------------------------------------------------------------------------

    def start(self, request: KycRequest, now_ms: int) -> Decision[KycState]:
        """Start reading the document.

        Raises:
            InvalidCommand: the request is no submission (no user, no document, bad number).
        """
        if not request.user_id:
            raise InvalidCommand("user_id must not be empty", field="user_id")
        if type(request.submission) is not int or request.submission < 1:
            raise InvalidCommand("submission must be a positive integer", field="submission")
        if not request.image:
            raise InvalidCommand("the document is empty", field="image")
        saga_id = self.saga_id(request)
        state = KycState(
            saga_id=saga_id, user_id=request.user_id, submission=request.submission, name=request.name,
            status="reading", step="ocr", attempt=1, submitted_at_ms=now_ms, updated_at_ms=now_ms,
            step_deadline_ms=now_ms + self.policy.step_timeout_ms, image=request.image, sha256=request.sha256,
            steps=(KycStep(step="ocr", result="started", attempt=1, at_ms=now_ms),),
            correlation_id=request.correlation_id,
        )
        return Decision(state, self._step_effects(state, 0), "document submitted")

    # --- transitions -------------------------------------------------------------------------

    def react(self, state: KycState, signal: Signal, now_ms: int) -> Decision[KycState] | None:
        if state.status in TERMINAL:
            return None
        if isinstance(signal, LogEvent):
            return self._on_event(state, signal, now_ms)
        if isinstance(signal, (Replied, AskFailed, CommandFailed)):
            if signal.step != state.step or signal.attempt != state.attempt:
                return None  # an older attempt's late answer
        if isinstance(signal, Replied):
            return self._on_answer(state, signal.value, now_ms) if state.status in _ANALYSING else None
        if isinstance(signal, AskFailed):
            if state.status not in _ANALYSING:
                return None
            if not signal.retryable:
                return self._reject(state, now_ms, "unreadable", signal.message, result="failed")
            return self._on_failure(state, signal.message, now_ms)
        if isinstance(signal, CommandFailed):
            if state.status in _ANALYSING:
                return None
            detail = f"{signal.error_type}: {signal.message}"
            if signal.retryable:
                return self._on_failure(state, detail, now_ms)
            return self._goto(state, "failed_needs_attention", now_ms, result="refused", detail=detail,
                              reason=f"recording the outcome was refused: {detail}")
        if isinstance(signal, DeadlinePassed) and signal.name == "step":
            if state.step_deadline_ms is None or now_ms < state.step_deadline_ms:
                return None
            return self._on_failure(state, f"step {state.step} attempt {state.attempt} timed out", now_ms)
        return None

    def _on_event(self, state: KycState, signal: LogEvent, now_ms: int) -> Decision[KycState] | None:
        event, where = signal.event, f"log {signal.partition}:{signal.offset}"
        if signal.aggregate_id != state.user_id or getattr(event, "submission", None) != state.submission:
            return None
        if isinstance(event, IdentityVerified) and state.status == "verifying":
            return self._goto(state, "verified", now_ms, result="ok", detail=where)
        if isinstance(event, VerificationRejected) and state.status == "rejecting":
            return self._goto(state, "rejected", now_ms, result="ok", detail=where)
        return None

    def _on_answer(self, state: KycState, value: Any, now_ms: int) -> Decision[KycState]:
        if isinstance(value, Unreadable):
            return self._reject(state, now_ms, "unreadable", value.detail)
        if state.status == "reading":
            if not isinstance(value, TextRead):
                return self._reject(state, now_ms, "unreadable", f"the ocr service answered {type(value).__name__}",
                                    result="failed")
            if not any(line.strip() for line in value.lines):
                return self._reject(state, now_ms, "unreadable", "no text found on the document")
            if not name_matches(state.name, value.lines):
                return self._reject(state, now_ms, "name_mismatch",
                                    f"the document does not show the name {state.name!r}")
            return self._goto(state, "detecting_face", now_ms, result="ok", detail=f"{len(value.lines)} lines")
        if not isinstance(value, FacesFound) or type(value.count) is not int:
            return self._reject(state, now_ms, "unreadable", f"the faces service answered {type(value).__name__}",
                                result="failed")
        if value.count < 1:
            return self._reject(state, now_ms, "no_face", "no face found on the document", faces=0)
        return self._goto(state, "verifying", now_ms, result="ok", detail=f"{value.count} faces", faces=value.count)

    def _on_failure(self, state: KycState, detail: str, now_ms: int) -> Decision[KycState]:
        if state.attempt < self.policy.max_attempts:
            return self._retry(state, now_ms, detail)
        if state.status in _ANALYSING:
            return self._reject(state, now_ms, "timed_out",
                                f"{state.step} gave no answer in {state.attempt} attempts: {detail}", result="gave_up")
        return self._goto(state, "failed_needs_attention", now_ms, result="gave_up", detail=detail,
                          reason=f"recording the outcome did not complete in {state.attempt} attempts: {detail}")

    # --- helpers -----------------------------------------------------------------------------

    def _reject(self, state: KycState, now_ms: int, reason: str, detail: str, *, result: str = "rejected",
                faces: int | None = None) -> Decision[KycState]:
        return self._goto(state, "rejecting", now_ms, result=result, detail=detail, reason=reason, faces=faces)

    def _retry(self, state: KycState, now_ms: int, detail: str) -> Decision[KycState]:
        attempt = state.attempt + 1
        delay = _backoff(self.policy, attempt)
        new = msgspec.structs.replace(
            state, attempt=attempt, updated_at_ms=now_ms,
            step_deadline_ms=now_ms + delay + self.policy.step_timeout_ms,
            steps=(*state.steps, KycStep(step=state.step, result="retry", attempt=state.attempt, at_ms=now_ms,
                                         detail=detail)),
        )
        return Decision(new, self._step_effects(new, delay), f"{state.step}: retry")

    def _goto(self, state: KycState, status: str, now_ms: int, *, result: str, detail: str = "",
              reason: str | None = None, faces: int | None = None) -> Decision[KycState]:
        record = KycStep(step=state.step, result=result, attempt=state.attempt, at_ms=now_ms, detail=detail)
        terminal = status in TERMINAL
        step = state.step if terminal else _STEP[status]
        steps = (*state.steps, record)
        if not terminal:
            steps = (*steps, KycStep(step=step, result="started", attempt=1, at_ms=now_ms))
        new = msgspec.structs.replace(
            state, status=status, step=step, attempt=state.attempt if terminal else 1, updated_at_ms=now_ms,
            step_deadline_ms=None if terminal else now_ms + self.policy.step_timeout_ms,
            image=state.image if status in _ANALYSING else b"",
            reason=reason if reason is not None else state.reason,
            detail=detail if reason is not None else state.detail,
            faces=faces if faces is not None else state.faces, steps=steps,
        )
        return Decision(new, () if terminal else self._step_effects(new, 0), f"{state.step} {result} -> {status}")

    def resume(self, state: KycState, now_ms: int) -> tuple[Effect, ...]:
        return () if state.status in TERMINAL else self._step_effects(state, 0)

    def _step_effects(self, s: KycState, delay_ms: int) -> tuple[Effect, ...]:
        step, attempt = s.step, s.attempt
        common: dict[str, Any] = {"aggregate_id": s.user_id, "command_id": command_id(s.saga_id, step, attempt),
                                  "subject": f"saga:{self.name}", "correlation_id": s.correlation_id or s.saga_id}
        action: Effect
        if s.status in _ANALYSING:
            action = Ask(step=step, attempt=attempt, delay_ms=delay_ms, service=step,
                         request=DocumentImage(user_id=s.user_id, submission=s.submission, image=s.image))
        elif s.status == "verifying":
            action = SendCommand(step=step, attempt=attempt, delay_ms=delay_ms, command=RecordIdentityVerified(
                submission=s.submission, matched_name=s.name[:MAX_NAME_LENGTH], **common))
        else:  # rejecting
            action = SendCommand(step=step, attempt=attempt, delay_ms=delay_ms, command=RejectIdentityVerification(
                submission=s.submission, reason=s.reason or "unreadable", detail=_clean(s.detail, MAX_REASON_LENGTH),
                **common))
        assert s.step_deadline_ms is not None
        return (action, ArmDeadline(name="step", at_ms=s.step_deadline_ms))
