"""Text in images: PP-OCRv4 detection and recognition (the ONNX files rapidocr-onnxruntime ships).

The three networks run in our own ONNX Runtime sessions (:func:`make_session`, so a Serve
replica controls its threads); the pre- and post-processing is rapidocr's own (``DetPreProcess``,
``DBPostProcess``, ``CTCLabelDecode``) so the results are the package's. The steps:

1. detection (DB): a probability map of text pixels -> quadrilaterals around text lines;
2. each quadrilateral is warped to an upright strip; strips the orientation classifier reads
   as upside down (180 degrees, confident) are turned;
3. recognition (SVTR + CTC): strips in batches of similar width -> characters and a score.

Lines scoring under ``min_score`` are dropped, as rapidocr does (its ``text_score``, 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from eventray.platform.ml.images import Box

#: rapidocr 1.4.4's config.yaml values; the input scale is chosen in :meth:`TextReader._scale`
DET_THRESH, BOX_THRESH, UNCLIP_RATIO = 0.3, 0.5, 1.6
CLS_SHAPE, CLS_THRESH = (3, 48, 192), 0.9
REC_HEIGHT, REC_WIDTH, REC_BATCH = 48, 320, 6


@dataclass(frozen=True, slots=True)
class TextLine:
    """One line of text read from an image, its recognition score in 0..1, and its box."""

    text: str
    score: float
    box: Box


class TextReader:
    """OCR over an RGB image: :meth:`read` gives the text lines, top to bottom, left to right."""

    def __init__(self, det: Any, rec: Any, cls: Any | None = None, *, min_score: float = 0.5,
                 max_side: int = 2000) -> None:
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess
        from rapidocr_onnxruntime.ch_ppocr_rec.utils import CTCLabelDecode

        self.det, self.rec, self.cls = det, rec, cls
        self.min_score = min_score
        self.max_side = max_side
        self._post = DBPostProcess(thresh=DET_THRESH, box_thresh=BOX_THRESH, max_candidates=1000,
                                   unclip_ratio=UNCLIP_RATIO, score_mode="fast", use_dilation=True)
        # The recognizer carries its own alphabet (6623 characters) in the ONNX metadata.
        characters = rec.get_modelmeta().custom_metadata_map["character"].splitlines()
        self._decode = CTCLabelDecode(character=characters)

    def read(self, rgb: np.ndarray) -> list[TextLine]:
        """The text lines of ``rgb`` (``H x W x 3`` uint8, as :func:`decode_image` returns)."""
        import cv2

        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # PaddleOCR's models were trained on BGR
        h, w = bgr.shape[:2]
        quads = self._detect(bgr)
        if not quads:
            return []
        strips = [_crop(bgr, q) for q in quads]
        if self.cls is not None:
            strips = self._orient(strips)
        lines = []
        for quad, (text, score) in zip(quads, self._recognize(strips)):
            if score < self.min_score or not text.strip():
                continue
            x, y, bw, bh = cv2.boundingRect(quad.astype(np.int32))
            lines.append(TextLine(text, float(score), Box.from_corners(x, y, x + bw, y + bh, width=w, height=h)))
        return lines

    def _scale(self, h: int, w: int) -> float:
        # rapidocr scales up so that the short side reaches 736 px, but caps the long side at
        # max_side: small text gets big enough to detect, large scans stay affordable.
        ratio = 736.0 / min(h, w) if min(h, w) < 736 else 1.0
        if max(h, w) * ratio > self.max_side:
            ratio = self.max_side / max(h, w)
        return ratio

    def _detect(self, bgr: np.ndarray) -> list[np.ndarray]:
        import cv2

        h, w = bgr.shape[:2]
        ratio = self._scale(h, w)
        rh, rw = (max(32, int(round(d * ratio / 32)) * 32) for d in (h, w))
        x = cv2.resize(bgr, (rw, rh)).astype(np.float32) / 255.0
        x = ((x - 0.5) / 0.5).transpose(2, 0, 1)[None]
        pred = self.det.run(None, {self.det.get_inputs()[0].name: x})[0]
        boxes, _ = self._post(pred, (h, w))
        quads = []
        for box in boxes:
            quad = _clockwise(np.asarray(box, dtype=np.float32))
            quad[:, 0] = np.clip(quad[:, 0], 0, w - 1)
            quad[:, 1] = np.clip(quad[:, 1], 0, h - 1)
            if np.linalg.norm(quad[0] - quad[1]) > 3 and np.linalg.norm(quad[0] - quad[3]) > 3:
                quads.append(quad)
        return _reading_order(quads)

    def _orient(self, strips: list[np.ndarray]) -> list[np.ndarray]:
        assert self.cls is not None
        c, ch, cw = CLS_SHAPE
        batch = np.stack([_normalised_strip(s, ch, cw, cw / ch) for s in strips])
        probs = self.cls.run(None, {self.cls.get_inputs()[0].name: batch})[0]
        return [np.ascontiguousarray(np.rot90(s, 2)) if p.argmax() == 1 and p.max() > CLS_THRESH else s
                for s, p in zip(strips, probs)]

    def _recognize(self, strips: list[np.ndarray]) -> list[tuple[str, float]]:
        # Batches of similar aspect ratio waste the least padding, as PaddleOCR does.
        order = np.argsort([s.shape[1] / s.shape[0] for s in strips], kind="stable")
        results: list[tuple[str, float]] = [("", 0.0)] * len(strips)
        name = self.rec.get_inputs()[0].name
        for start in range(0, len(order), REC_BATCH):
            idx = order[start:start + REC_BATCH]
            ratio = max(REC_WIDTH / REC_HEIGHT, *(strips[i].shape[1] / strips[i].shape[0] for i in idx))
            batch = np.stack([_normalised_strip(strips[i], REC_HEIGHT, int(REC_HEIGHT * ratio), ratio)
                              for i in idx])
            preds = self.rec.run(None, {name: batch})[0]
            for i, (text, score) in zip(idx, self._decode(preds)):
                results[i] = (text, float(score))
        return results


def _normalised_strip(strip: np.ndarray, height: int, width: int, max_ratio: float) -> np.ndarray:
    """Resize to ``height`` keeping the aspect ratio, scale to -1..1, pad on the right to ``width``."""
    import cv2

    h, w = strip.shape[:2]
    resized_w = min(width, int(math.ceil(height * w / float(h))))
    resized = cv2.resize(strip, (resized_w, height)).astype(np.float32).transpose(2, 0, 1) / 255.0
    out = np.zeros((3, height, width), dtype=np.float32)
    out[:, :, :resized_w] = (resized - 0.5) / 0.5
    return out


def _clockwise(pts: np.ndarray) -> np.ndarray:
    """The four corners as top-left, top-right, bottom-right, bottom-left."""
    xs = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = xs[:2], xs[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def _reading_order(quads: list[np.ndarray]) -> list[np.ndarray]:
    """Top to bottom; boxes whose tops are within 10 px are one row, read left to right."""
    out = sorted(quads, key=lambda q: (float(q[0][1]), float(q[0][0])))
    for i in range(len(out) - 1):
        for j in range(i, -1, -1):
            if abs(out[j + 1][0][1] - out[j][0][1]) < 10 and out[j + 1][0][0] < out[j][0][0]:
                out[j], out[j + 1] = out[j + 1], out[j]
            else:
                break
    return out


def _crop(bgr: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The quadrilateral warped to an upright rectangle; tall strips are turned to lie flat."""
    import cv2

    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    strip = cv2.warpPerspective(bgr, m, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    return np.ascontiguousarray(np.rot90(strip)) if strip.shape[0] / max(1, strip.shape[1]) >= 1.5 else strip
