"""An image profile in place of scene analysis: measured properties plus what the detectors found.

No learned scene classifier ships in any package searched for this project, so this does not
say "beach" or "office". It measures the picture (brightness, colourfulness, sharpness,
dominant colours) and counts the faces, people, other objects and text lines the pipelines of
:mod:`~eventray.platform.ml.ocr`, :mod:`~eventray.platform.ml.faces` and
:mod:`~eventray.platform.ml.objects` find. Label it as what it is wherever it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eventray.platform.ml.images import Detection
from eventray.platform.ml.ocr import TextLine

DOMINANT_COLOURS = 5
#: the side the image is reduced to before colours are counted (their shares barely move)
COLOUR_SIDE = 128


@dataclass(frozen=True, slots=True)
class ColourShare:
    """A dominant colour as ``#rrggbb`` and the share of the image's pixels nearest to it."""

    hex: str
    share: float


@dataclass(frozen=True)
class ImageProfile:
    """Measured properties of an image and the detectors' counts (``None`` where one did not run).

    ``brightness`` is the mean Rec. 601 luma in 0..1; ``colourfulness`` is Hasler and
    Suesstrunk's (2003) M (0 for grey, about 100 and more for vivid colour); ``sharpness`` is the
    variance of the Laplacian of the grey image (0..255 scale): low is blurred or flat.
    """

    width: int
    height: int
    brightness: float
    colourfulness: float
    sharpness: float
    dominant_colours: list[ColourShare]
    faces: int | None = None
    people: int | None = None
    objects: int | None = None
    text_lines: int | None = None


@dataclass(frozen=True)
class ImageAnalysis:
    """Everything the image pipelines say about one image."""

    faces: list[Detection]
    objects: list[Detection]
    text: list[TextLine]
    profile: ImageProfile


def measure(rgb: np.ndarray) -> ImageProfile:
    """The measured part of the profile of ``rgb`` (``H x W x 3`` uint8)."""
    from PIL import Image

    px = rgb.astype(np.float64)
    r, g, b = px[:, :, 0], px[:, :, 1], px[:, :, 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    rg, yb = r - g, 0.5 * (r + g) - b
    colourfulness = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    # 4-neighbour Laplacian; edge pixels repeat so a flat image scores 0
    padded = np.pad(luma, 1, mode="edge")
    laplacian = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * luma)
    small = Image.fromarray(rgb)
    small.thumbnail((COLOUR_SIDE, COLOUR_SIDE))
    quantized = small.quantize(colors=DOMINANT_COLOURS, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette() or []
    # a palette image's colours are (count, palette index) pairs
    pairs: list[tuple[int, Any]] = quantized.getcolors() or []
    counts = sorted(((n, int(i)) for n, i in pairs), key=lambda c: (-c[0], c[1]))
    total = sum(n for n, _ in counts) or 1
    colours = [ColourShare("#{:02x}{:02x}{:02x}".format(*palette[3 * i:3 * i + 3]), round(n / total, 4))
               for n, i in counts]
    return ImageProfile(width=int(rgb.shape[1]), height=int(rgb.shape[0]), brightness=round(float(luma.mean()) / 255, 4),
                        colourfulness=round(colourfulness, 3), sharpness=round(float(laplacian.var()), 3),
                        dominant_colours=colours)


def analyze(rgb: np.ndarray, *, faces: Any = None, objects: Any = None, ocr: Any = None) -> ImageAnalysis:
    """Run the given pipelines on ``rgb`` and profile it; a pipeline left ``None`` is not run."""
    found_faces = faces.detect(rgb) if faces is not None else []
    found_objects = objects.detect(rgb) if objects is not None else []
    lines = ocr.read(rgb) if ocr is not None else []
    measured = measure(rgb)
    profile = ImageProfile(
        **{f: getattr(measured, f) for f in ("width", "height", "brightness", "colourfulness", "sharpness",
                                             "dominant_colours")},
        faces=len(found_faces) if faces is not None else None,
        people=sum(d.label == "person" for d in found_objects) if objects is not None else None,
        objects=sum(d.label != "person" for d in found_objects) if objects is not None else None,
        text_lines=len(lines) if ocr is not None else None,
    )
    return ImageAnalysis(found_faces, found_objects, lines, profile)
