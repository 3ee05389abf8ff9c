"""YOLO-format pre-labels for a reviewed image, so annotators correct rather than draw."""

from __future__ import annotations

import logging
from typing import List, Sequence

from shared.messages import Detection, Feedback, InspectionResult

log = logging.getLogger(__name__)


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _normalised_box(det: Detection, width: int, height: int) -> List[float]:
    """(x1, y1, x2, y2) in 0..1: box_norm when present, else the pixel box over the image size."""
    if len(det.box_norm) == 4:
        return [_clamp(v) for v in det.box_norm]
    if len(det.box) == 4 and width > 0 and height > 0:
        x1, y1, x2, y2 = det.box
        return [_clamp(x1 / width), _clamp(y1 / height), _clamp(x2 / width), _clamp(y2 / height)]
    raise ValueError(f"detection of class {det.class_id} has no usable box")


def yolo_line(det: Detection, width: int = 0, height: int = 0) -> str:
    """`class cx cy w h`, normalised to the image, 6 decimals."""
    x1, y1, x2, y2 = _normalised_box(det, width, height)
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    return f"{det.class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def yolo_labels(detections: Sequence[Detection], width: int = 0, height: int = 0) -> str:
    """One line per detection; an empty file means "no objects", as YOLO datasets expect.

    A detection without any usable box is left out (and logged): the annotator adds it back,
    which beats holding the whole image back from review.
    """
    lines = []
    for det in detections:
        try:
            lines.append(yolo_line(det, width, height) + "\n")
        except ValueError as exc:
            log.warning("label left out: %s", exc)
    return "".join(lines)


def operator_labels(feedback: Feedback) -> str:
    """The operator's label of the image, in YOLO format: `confirm` keeps the model's boxes,
    `false_alarm` is an empty file (nothing wrong), `missed_defect` adds the boxes drawn (class
    `class_id`) to the model's. A missed defect without a box keeps the model's boxes: the
    image is then flagged for an annotator by its feedback JSON."""
    if feedback.label == "false_alarm":
        return ""
    result = InspectionResult.from_dict(feedback.result)
    text = yolo_labels(result.detections, result.image_width, result.image_height)
    if feedback.label == "missed_defect":
        for x1, y1, x2, y2 in feedback.boxes:
            drawn = Detection(class_id=feedback.class_id, class_name="", score=1.0, box=[],
                              box_norm=[x1, y1, x2, y2])
            text += yolo_line(drawn) + "\n"
    return text
