"""Model families at run time: validate a request, run a batch in ONNX Runtime, split the results.

A :class:`Family` is pure Python around an ``onnxruntime.InferenceSession``; the Serve
deployment, the benchmark's raw path and the tests all use the same code. Validation happens
per request, before batching, and raises the typed errors of :mod:`eventray.platform.errors`,
so one bad request never fails the batch it would have joined.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from eventray.platform.errors import (
    EmptyText, InvalidModelInput, NonFiniteInput, TextTooLong, WrongInputShape,
)


def make_session(model: Path | str | bytes, *, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (onnxruntime ignores OMP_NUM_THREADS)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Limits:
    """Per-request limits, checked in ``validate`` before a request joins a batch."""

    max_rows: int = 4096
    max_text_chars: int = 2000
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 25_000_000


class Family:
    """Base of the model families. Subclasses set ``name`` and implement the three steps."""

    name: ClassVar[str]

    def __init__(self, session: Any, *, limits: Limits = Limits()) -> None:
        self.session = session
        self.limits = limits
        meta = session.get_modelmeta().custom_metadata_map
        self.meta = {k.removeprefix("eventray."): json.loads(v) for k, v in meta.items()}

    def validate(self, payload: Any) -> Any:
        """Check one request and convert it to the batchable form; raises InvalidModelInput."""
        raise NotImplementedError

    def run(self, items: list[Any]) -> list[Any]:
        """Run validated items as one ONNX call; one result per item."""
        raise NotImplementedError

    @staticmethod
    def rows(item: Any) -> int:
        return len(item)


def _matrix(payload: Any, width: int, limits: Limits, field: str) -> np.ndarray:
    try:
        arr = np.asarray(payload, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidModelInput(f"{field} must be numbers: {e}", field=field) from None
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != width or arr.shape[0] == 0:
        raise WrongInputShape(f"{field} must have shape [rows, {width}], got {list(np.shape(payload))}",
                              field=field, expected=["rows", width], got=list(np.shape(payload)))
    if arr.shape[0] > limits.max_rows:
        raise WrongInputShape(f"{field} has {arr.shape[0]} rows; at most {limits.max_rows} per request",
                              field=field, expected=["rows", width], got=list(arr.shape))
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise NonFiniteInput(f"{field} holds NaN or infinity at row {bad[0]}, column {bad[1]}",
                             field=field, row=bad[0], column=bad[1])
    return np.ascontiguousarray(arr)


def _split(arrays: dict[str, np.ndarray], sizes: list[int]) -> list[dict[str, np.ndarray]]:
    out, start = [], 0
    for n in sizes:
        out.append({k: v[start:start + n] for k, v in arrays.items()})
        start += n
    return out


class AnomalyFamily(Family):
    """IsolationForest over movement features. Result per row: ``score`` (higher = stranger; > 0 is
    an outlier at the trained contamination) and ``anomaly`` (bool)."""

    name = "anomaly"

    def validate(self, payload: Any) -> np.ndarray:
        return _matrix(payload, 4, self.limits, "features")

    def run(self, items: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        x = items[0] if len(items) == 1 else np.concatenate(items)
        label, scores = self.session.run(None, {"X": x})
        result = {"score": -scores.reshape(-1), "anomaly": label.reshape(-1) == -1}
        return _split(result, [len(i) for i in items])


class ImageFamily(Family):
    """Digit classifier on 8x8 images, pixel values 0..16. Result: ``label`` and ``probabilities``."""

    name = "digits"

    def validate(self, payload: Any) -> np.ndarray:
        arr = np.asarray(payload, dtype=np.float32) if not isinstance(payload, np.ndarray) else payload
        if arr.ndim == 3 and arr.shape[1:] == (8, 8):
            payload = arr.reshape(len(arr), 64)
        elif arr.ndim == 2 and arr.shape == (8, 8):
            payload = arr.reshape(1, 64)
        x = _matrix(payload, 64, self.limits, "pixels")
        if x.min() < 0 or x.max() > 16:
            raise InvalidModelInput("pixels must be in 0..16 (8x8 digits)", field="pixels")
        return x / np.float32(self.meta.get("pixel_scale", 16.0))

    def run(self, items: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        x = items[0] if len(items) == 1 else np.concatenate(items)
        label, proba = self.session.run(None, {"X": x})
        return _split({"label": label.reshape(-1), "probabilities": proba}, [len(i) for i in items])


class TextFamily(Family):
    """TF-IDF + logistic regression sentiment, with keywords. Result per text: ``label``
    (class name), ``probabilities`` and ``keywords`` (top TF-IDF terms with weights)."""

    name = "sentiment"

    def __init__(self, session: Any, *, limits: Limits = Limits()) -> None:
        super().__init__(session, limits=limits)
        self.classes = self.meta["classes"]
        self.vocabulary = self.meta["vocabulary"]

    def validate(self, payload: Any) -> np.ndarray:
        texts = [payload] if isinstance(payload, str) else payload
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
            raise WrongInputShape("text must be a string or a non-empty list of strings", field="text")
        if len(texts) > self.limits.max_rows:
            raise WrongInputShape(f"at most {self.limits.max_rows} texts per request", field="text")
        for i, t in enumerate(texts):
            if len(t) > self.limits.max_text_chars:
                raise TextTooLong(f"text {i} has {len(t)} characters; the limit is {self.limits.max_text_chars}",
                                  field="text", index=i, length=len(t), limit=self.limits.max_text_chars)
            if sum(ch.isalpha() for ch in t) < 2:
                raise EmptyText(f"text {i} is empty or has no word to classify", field="text", index=i)
        return np.array(texts, dtype=object).reshape(-1, 1)

    def run(self, items: list[np.ndarray]) -> list[dict[str, Any]]:
        x = items[0] if len(items) == 1 else np.concatenate(items)
        label, proba, weights, indices = self.session.run(None, {"text": x})
        names = np.array(self.classes, dtype=object)[label.reshape(-1)]
        keywords = [[(self.vocabulary[j], float(w)) for j, w in zip(idx, ws) if w > 0]
                    for idx, ws in zip(indices.tolist(), weights.tolist())]
        out, start = [], 0
        for item in items:
            n = len(item)
            out.append({"label": names[start:start + n], "probabilities": proba[start:start + n],
                        "keywords": keywords[start:start + n]})
            start += n
        return out


class RecommendFamily(Family):
    """Top-k items for a user from TruncatedSVD item factors. Payload: ``(user_id, first)``."""

    name = "recommend"
    MAX_FIRST = 50

    def __init__(self, session: Any, *, limits: Limits = Limits()) -> None:
        super().__init__(session, limits=limits)
        self.users = {u: i for i, u in enumerate(self.meta["users"])}
        self.items = self.meta["items"]

    def validate(self, payload: Any) -> tuple[np.ndarray, int]:
        try:
            user_id, first = payload
        except (TypeError, ValueError):
            raise WrongInputShape("recommend takes (user_id, first)", field="payload") from None
        if not isinstance(first, int) or not 1 <= first <= min(self.MAX_FIRST, len(self.items)):
            raise InvalidModelInput(f"first must be an integer in 1..{self.MAX_FIRST}", field="first")
        index = self.users.get(user_id)
        if index is None:
            raise InvalidModelInput(f"unknown user {user_id!r}: no interactions to recommend from",
                                    field="userId", user_id=user_id)
        return np.array([index], dtype=np.int64), first

    @staticmethod
    def rows(item: Any) -> int:
        return 1

    def run(self, items: list[tuple[np.ndarray, int]]) -> list[dict[str, Any]]:
        users = np.concatenate([u for u, _ in items])
        k = max(first for _, first in items)
        scores, index = self.session.run(None, {"user_index": users, "k": np.array([k], dtype=np.int64)})
        return [{"items": [self.items[j] for j in index[i, :first]], "scores": scores[i, :first]}
                for i, (_, first) in enumerate(items)]


class HybridRecommendFamily(RecommendFamily):
    """Top-k items by content, collaborative (SVD) or blended scores. Payload:
    ``(user_id, first, strategy)`` with strategy ``COLLABORATIVE``, ``CONTENT`` or ``HYBRID``,
    answered ``{"items", "scores"}``; or a list of such triples (at most ``Limits.max_rows``: the
    bulk form, one request for many users), answered column-wise: ``{"items": [[item, ...], ...],
    "scores": [[score, ...], ...]}``, one row per triple in order, each ``first`` long. A bad
    triple fails its whole request, with its ``index``."""

    name = "recommend_hybrid"

    def __init__(self, session: Any, *, limits: Limits = Limits()) -> None:
        super().__init__(session, limits=limits)
        self.strategies: dict[str, float] = self.meta["strategies"]

    def _one(self, payload: Any) -> tuple[int, int, float]:
        try:
            user_id, first, strategy = payload
        except (TypeError, ValueError):
            raise WrongInputShape("recommend takes (user_id, first, strategy)", field="payload") from None
        alpha = self.strategies.get(str(strategy).upper())
        if alpha is None:
            raise InvalidModelInput(f"strategy must be one of {', '.join(self.strategies)}", field="strategy")
        index, first = super().validate((user_id, first))
        return int(index[0]), first, alpha

    def validate(self, payload: Any) -> _Recommendations:  # type: ignore[override]
        bulk = isinstance(payload, (list, tuple)) and bool(payload) and isinstance(payload[0], (list, tuple))
        if not bulk:
            return _Recommendations.of([self._one(payload)], bulk=False)
        if len(payload) > self.limits.max_rows:
            raise WrongInputShape(f"at most {self.limits.max_rows} users per request", field="payload")
        triples = []
        for i, one in enumerate(payload):
            try:
                triples.append(self._one(one))
            except InvalidModelInput as e:
                e.details.setdefault("index", i)
                raise
        return _Recommendations.of(triples, bulk=True)

    @staticmethod
    def rows(item: Any) -> int:
        return len(item.users)

    def run(self, items: list[_Recommendations]) -> list[dict[str, Any]]:  # type: ignore[override]
        users = np.concatenate([r.users for r in items])
        alpha = np.concatenate([r.alphas for r in items]).reshape(-1, 1)
        k = max(max(r.firsts) for r in items)
        scores, index = self.session.run(None, {"user_index": users, "alpha": alpha,
                                                "k": np.array([k], dtype=np.int64)})
        out, start = [], 0
        for r in items:
            n = len(r.firsts)
            if r.bulk:  # plain lists, column-wise: a tenth of the cost of a dict and an array per user to ship
                rows, values = index[start:start + n].tolist(), scores[start:start + n].tolist()
                out.append({"items": [[self.items[j] for j in row[:first]] for row, first in zip(rows, r.firsts)],
                            "scores": [row[:first] for row, first in zip(values, r.firsts)]})
            else:
                out.append({"items": [self.items[j] for j in index[start, :r.firsts[0]]],
                            "scores": scores[start, :r.firsts[0]]})
            start += n
        return out


@dataclass(frozen=True)
class _Recommendations:
    """One validated ``recommend_hybrid`` request: its users' indices, ``first`` and alpha each."""

    users: np.ndarray
    firsts: tuple[int, ...]
    alphas: np.ndarray
    bulk: bool

    @classmethod
    def of(cls, triples: list[tuple[int, int, float]], *, bulk: bool) -> _Recommendations:
        return cls(users=np.array([u for u, _, _ in triples], dtype=np.int64),
                   firsts=tuple(f for _, f, _ in triples),
                   alphas=np.array([a for _, _, a in triples], dtype=np.float32), bulk=bulk)


FAMILIES: dict[str, type[Family]] = {
    "anomaly": AnomalyFamily, "image": ImageFamily, "text": TextFamily, "recommend": RecommendFamily,
    "hybrid": HybridRecommendFamily,
}


def load_family(record_family: str, path: Path | str, *, threads: int = 1, limits: Limits = Limits()) -> Family:
    """Open the ONNX file at ``path`` as the family ``record_family`` (see the registry record)."""
    return FAMILIES[record_family](make_session(path, threads=threads), limits=limits)


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
