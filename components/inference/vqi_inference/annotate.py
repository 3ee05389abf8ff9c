"""Annotated copies of defect images (boxes + labels), written atomically to a folder."""

from __future__ import annotations

import os
import re
from typing import Optional

import cv2
import numpy as np

from shared.messages import InspectionResult

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_name(image_id: str) -> str:
    """A file name derived from the image id that cannot escape the folder."""
    safe = _UNSAFE.sub("_", image_id).strip("._") or "image"
    return safe[:200] + ".jpg"


def draw(image: np.ndarray, result: InspectionResult) -> np.ndarray:
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    thick = max(1, round(max(out.shape[:2]) / 400))
    # The image may be a reduced-scale decode; boxes are in original pixels.
    sx = out.shape[1] / result.image_width if result.image_width else 1.0
    sy = out.shape[0] / result.image_height if result.image_height else 1.0
    for d in result.detections:
        x1, x2 = (int(round(v * sx)) for v in (d.box[0], d.box[2]))
        y1, y2 = (int(round(v * sy)) for v in (d.box[1], d.box[3]))
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 0, 255), thick)
        label = f"{d.class_name} {d.score:.2f}"
        cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, (0, 0, 255), thick, cv2.LINE_AA)
    return out


def write(folder: str, image: np.ndarray, result: InspectionResult) -> Optional[str]:
    """Write the annotated image; returns its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, file_name(result.image_id))
    write_jpeg(path, draw(image, result))
    return path


def write_jpeg(path: str, image: np.ndarray, quality: int = 90) -> None:
    """Encode and write atomically (a reader never sees half a file); ValueError if encoding
    fails."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"cannot encode {path} as JPEG")
    tmp = path + ".part"
    with open(tmp, "wb") as fh:
        fh.write(data.tobytes())
    os.replace(tmp, path)
