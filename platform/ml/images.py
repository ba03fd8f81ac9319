"""Images in and boxes out: what the OCR, face and object pipelines share.

:func:`decode_image` turns request bytes into an RGB ``uint8`` array, checking the size from the
header before any pixel is decoded, so a decompression bomb is refused without being inflated.
Every refusal is a typed :class:`~eventray.platform.errors.InvalidModelInput`, raised per request
before batching, so one bad image never fails the batch it would have joined.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from eventray.platform.errors import EmptyImage, ImageTooLarge, InvalidImage


@dataclass(frozen=True)
class ImageLimits:
    """What one image request may hold. 10 MiB and 25 megapixels cover phone photos and scans."""

    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_side: int = 10_000


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in pixels of the original image; ``x``, ``y`` is its top-left corner."""

    x: int
    y: int
    width: int
    height: int

    @classmethod
    def from_corners(cls, x0: float, y0: float, x1: float, y1: float, *, width: int, height: int) -> Box:
        """The box from ``(x0, y0)`` to ``(x1, y1)``, clipped to an image of ``width`` x ``height``."""
        left, top = max(0, int(round(x0))), max(0, int(round(y0)))
        right, bottom = min(width, int(round(x1))), min(height, int(round(y1)))
        return cls(left, top, max(0, right - left), max(0, bottom - top))


@dataclass(frozen=True, slots=True)
class Detection:
    """One thing found in an image: a class label, its confidence in 0..1, and where it is."""

    label: str
    score: float
    box: Box


def decode_image(payload: Any, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Decode ``payload`` (encoded bytes, or an ``H x W x 3`` array) into an RGB ``uint8`` array.

    Raises:
        EmptyImage: no bytes, or zero width or height.
        ImageTooLarge: more than ``limits.max_bytes`` bytes, or more pixels or a longer side than allowed.
        InvalidImage: not an image any installed Pillow decoder reads, or truncated.
    """
    if isinstance(payload, np.ndarray):
        return _checked_array(payload, limits)
    if isinstance(payload, (bytearray, memoryview)):
        payload = bytes(payload)
    if not isinstance(payload, bytes):
        raise InvalidImage(f"an image must be bytes, got {type(payload).__name__}", field="image")
    if not payload:
        raise EmptyImage("the image has no bytes", field="image")
    if len(payload) > limits.max_bytes:
        raise ImageTooLarge(f"the image has {len(payload)} bytes; the limit is {limits.max_bytes}",
                            field="image", size=len(payload), limit=limits.max_bytes)
    if payload[:8] == _PNG and len(payload) >= 24:
        # Pillow refuses a zero-sized PNG as "not an image"; say what is wrong with it instead.
        _check_size(int.from_bytes(payload[16:20], "big"), int.from_bytes(payload[20:24], "big"), limits)
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, on bombs; the size check below decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(payload)) as image:
                width, height = image.size
                _check_size(width, height, limits)
                image.load()
                rgb = ImageOps.exif_transpose(image).convert("RGB")
    except (EmptyImage, ImageTooLarge):
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"the image decodes to too many pixels: {e}", field="image") from None
    except UnidentifiedImageError:
        raise InvalidImage("the bytes are not an image in a supported format (PNG, JPEG, WebP, GIF, BMP, TIFF)",
                           field="image") from None
    except (OSError, SyntaxError, ValueError) as e:
        # Pillow reports truncated or corrupt data as OSError or SyntaxError, bad headers as ValueError.
        raise InvalidImage(f"the image could not be decoded: {e}", field="image") from None
    return np.asarray(rgb, dtype=np.uint8)


_PNG = b"\x89PNG\r\n\x1a\n"


def _check_size(width: int, height: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise EmptyImage(f"the image is {width}x{height} pixels", field="image", width=width, height=height)
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"the image is {width}x{height} pixels; the limits are {limits.max_pixels} pixels "
            f"and {limits.max_side} per side", field="image", width=width, height=height)


def _checked_array(arr: np.ndarray, limits: ImageLimits) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InvalidImage(f"an image array must be H x W x 3, got shape {list(arr.shape)}", field="image")
    _check_size(int(arr.shape[1]), int(arr.shape[0]), limits)
    if arr.dtype != np.uint8:
        raise InvalidImage(f"an image array must be uint8, got {arr.dtype}", field="image")
    return np.ascontiguousarray(arr[:, :, :3])


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, *, by_min: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression over ``[x0, y0, x1, y1]`` rows; the kept indices, best first.

    ``by_min`` divides the overlap by the smaller box instead of the union (MTCNN's last stage),
    which also drops a box lying inside a larger one.
    """
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.array(keep, dtype=np.int64)
