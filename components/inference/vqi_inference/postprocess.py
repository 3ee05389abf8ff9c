"""Raw YOLO output -> final detections in original image pixels (numpy only).

Mirrors ultralytics.utils.nms.non_max_suppression for a single image without objectness: a box is
a candidate when its best class score is above that class's threshold (strictly greater, as in
Ultralytics), then greedy NMS (class-aware by offsetting boxes per class, or class-agnostic),
then max_det, then boxes scaled back with the letterbox geometry and clipped to the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

import numpy as np

from .letterbox import Letterbox

MAX_NMS = 30000  # candidates kept for NMS, highest scores first (Ultralytics' max_nms)
MAX_WH = 7680  # per-class offset that separates classes in class-aware NMS (Ultralytics' max_wh)


@dataclass(frozen=True)
class Thresholds:
    """Detection thresholds; `per_class` holds one confidence threshold per class id."""

    per_class: np.ndarray = field(compare=False)
    iou: float = 0.45
    max_detections: int = 100
    agnostic: bool = False


@dataclass
class Detections:
    """Kept detections, highest score first."""

    boxes: np.ndarray  # (k, 4) float32 xyxy
    scores: np.ndarray  # (k,) float32
    classes: np.ndarray  # (k,) int64

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def empty() -> Detections:
    return Detections(
        np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    )


def candidates(raw: np.ndarray, per_class: np.ndarray) -> Detections:
    """Boxes whose best class beats that class's threshold; raw is (4 + nc, N) cxcywh."""
    class_scores = raw[4:]
    best = class_scores.max(axis=0)
    idx = np.flatnonzero(best > per_class.min())
    if idx.size == 0:
        return empty()
    cls = class_scores[:, idx].argmax(axis=0) if class_scores.shape[0] > 1 else np.zeros(
        idx.size, np.int64
    )
    conf = best[idx]
    keep = conf > per_class[cls]
    idx, cls, conf = idx[keep], cls[keep], conf[keep]
    xywh = raw[:4, idx].T
    boxes = np.empty_like(xywh)
    half = xywh[:, 2:] / 2
    boxes[:, :2] = xywh[:, :2] - half
    boxes[:, 2:] = xywh[:, :2] + half
    return Detections(boxes, conf, cls.astype(np.int64))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between xyxy boxes a [n,4] and b [m,4]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int) -> np.ndarray:
    """Greedy NMS (as torchvision.ops.nms): indices kept, highest score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size and len(keep) < max_keep:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        if rest.size == 0:
            break
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]  # NaN (zero-area pairs) is kept, like torchvision
    return np.asarray(keep, dtype=np.int64)


def select(raw: np.ndarray, thresholds: Thresholds) -> Detections:
    """Candidates -> NMS -> max_det, boxes still in model-input pixels."""
    if raw.ndim == 3:
        raw = raw[0]
    found = candidates(raw, thresholds.per_class)
    n = len(found)
    if n == 0:
        return found
    if n > MAX_NMS:
        top = np.argsort(-found.scores, kind="stable")[:MAX_NMS]
        found = Detections(found.boxes[top], found.scores[top], found.classes[top])
    offset = 0.0 if thresholds.agnostic else MAX_WH
    shifted = found.boxes + (found.classes[:, None] * offset).astype(np.float32)
    keep = nms(shifted, found.scores, thresholds.iou, thresholds.max_detections)
    return Detections(found.boxes[keep], found.scores[keep], found.classes[keep])


def scale_boxes(boxes: np.ndarray, box: Letterbox) -> np.ndarray:
    """Model-input xyxy boxes -> original-image pixels, clipped (as Ultralytics' scale_boxes)."""
    out = boxes.astype(np.float32, copy=True)
    gain_x, gain_y = box.gain_xy
    out[:, [0, 2]] -= box.left
    out[:, [1, 3]] -= box.top
    out[:, [0, 2]] /= gain_x
    out[:, [1, 3]] /= gain_y
    h, w = box.orig_hw
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


def detect(raw: np.ndarray, thresholds: Thresholds, box: Letterbox) -> Detections:
    """Final detections for one image in original pixel coordinates."""
    found = select(raw, thresholds)
    if len(found):
        found.boxes = scale_boxes(found.boxes, box)
    return found


def rescale(boxes: np.ndarray, from_hw: Tuple[int, int], to_hw: Tuple[int, int]) -> np.ndarray:
    """xyxy boxes in an image of size from_hw -> the same image at to_hw, clipped."""
    sx, sy = to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]
    out = boxes * np.asarray([sx, sy, sx, sy], dtype=np.float32)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, to_hw[1])
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, to_hw[0])
    return out


def normalised(boxes: np.ndarray, orig_hw: Tuple[int, int]) -> np.ndarray:
    """xyxy boxes divided by image width/height (0..1)."""
    h, w = orig_hw
    return boxes / np.asarray([w, h, w, h], dtype=np.float32)
