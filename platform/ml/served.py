"""Families for the imported models, so the generic model deployment can host them as it hosts the rest.

The trained families of :mod:`~eventray.platform.ml.families` wrap one ONNX session. These wrap
a pipeline instead: OCR and faces run several sessions per image, objects one, entities run
spaCy (not ONNX). Each keeps the Family contract: ``validate`` checks one request before batching
and raises a typed error; ``run`` takes a batch of validated items and returns one plain,
picklable result per item. :func:`load_registered` opens any registry record as its family.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from eventray.platform.errors import WrongInputShape
from eventray.platform.ml.families import Family, Limits, load_family
from eventray.platform.ml.images import Detection, ImageLimits, decode_image
from eventray.platform.ml.registry import ModelRecord, Registry
from eventray.platform.ml.text import check_text


class PipelineFamily(Family):
    """Base of the families that hold a pipeline rather than one ONNX session."""

    def __init__(self, pipeline: Any, *, limits: Limits = Limits()) -> None:
        self.session = None
        self.pipeline = pipeline
        self.limits = limits
        self.meta = {}


class ImagePipelineFamily(PipelineFamily):
    """Payload: one image as encoded bytes (PNG, JPEG, ...) or an ``H x W x 3`` uint8 array."""

    def __init__(self, pipeline: Any, *, limits: Limits = Limits()) -> None:
        super().__init__(pipeline, limits=limits)
        self.image_limits = ImageLimits(max_bytes=limits.max_image_bytes, max_pixels=limits.max_image_pixels)

    def validate(self, payload: Any) -> np.ndarray:
        return decode_image(payload, self.image_limits)

    @staticmethod
    def rows(item: Any) -> int:
        return 1


def _detections(found: list[Detection]) -> list[dict[str, Any]]:
    return [{"label": d.label, "score": d.score, "box": asdict(d.box)} for d in found]


class OcrFamily(ImagePipelineFamily):
    """Result per image: ``lines``, each ``{text, score, box: {x, y, width, height}}``."""

    name = "ocr"

    def run(self, items: list[np.ndarray]) -> list[dict[str, Any]]:
        # Images differ in size, so each runs alone; the batch still saves the per-request hops.
        return [{"lines": [{"text": t.text, "score": t.score, "box": asdict(t.box)} for t in self.pipeline.read(i)]}
                for i in items]


class FacesFamily(ImagePipelineFamily):
    """Result per image: ``detections`` labelled ``face``."""

    name = "faces"

    def run(self, items: list[np.ndarray]) -> list[dict[str, Any]]:
        return [{"detections": _detections(self.pipeline.detect(i))} for i in items]


class ObjectsFamily(FacesFamily):
    """Result per image: ``detections`` with COCO class labels."""

    name = "objects"


class EntitiesFamily(PipelineFamily):
    """spaCy entities. Payload: a text or a list of texts. Result per request: ``entities``, a list
    per text of ``{text, label, start, end}``."""

    name = "entities"

    def validate(self, payload: Any) -> list[str]:
        texts = [payload] if isinstance(payload, str) else payload
        if not isinstance(texts, (list, tuple)) or not texts:
            raise WrongInputShape("text must be a string or a non-empty list of strings", field="text")
        if len(texts) > self.limits.max_rows:
            raise WrongInputShape(f"at most {self.limits.max_rows} texts per request", field="text")
        return [check_text(t, self.limits.max_text_chars, index=i) for i, t in enumerate(texts)]

    def run(self, items: list[list[str]]) -> list[dict[str, Any]]:
        flat = self.pipeline.entities([t for item in items for t in item])  # one nlp.pipe per batch
        out, start = [], 0
        for item in items:
            out.append({"entities": [[asdict(e) for e in ents] for ents in flat[start:start + len(item)]]})
            start += len(item)
        return out


PIPELINE_FAMILIES: dict[str, type[PipelineFamily]] = {
    "ocr": OcrFamily, "faces": FacesFamily, "objects": ObjectsFamily, "entities": EntitiesFamily,
}


def load_registered(registry: Registry, record: ModelRecord, *, threads: int = 1,
                    limits: Limits = Limits()) -> Family:
    """Open ``record`` as its family: one ONNX session, a checked multi-file pipeline, or spaCy."""
    if record.runtime == "spacy":
        from eventray.platform.ml.text import EntityRecognizer

        return EntitiesFamily(EntityRecognizer.load(), limits=limits)
    if record.components:
        from eventray.platform.ml.pretrained import load_pipeline

        pipeline = load_pipeline(registry, record.name, record.version, threads=threads)
        return PIPELINE_FAMILIES[record.family](pipeline, limits=limits)
    return load_family(record.family, registry.path(record), threads=threads, limits=limits)
