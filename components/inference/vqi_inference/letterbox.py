"""Letterbox resize exactly as Ultralytics' LetterBox (auto=False, center=True by default).

The same rounding (each side at least one pixel, padding split with the -0.1/+0.1 rule), the same
interpolation (bilinear) and the same pad value, so the model sees the pixels it saw in validation
and boxes map back with the same arithmetic as ultralytics.utils.ops.scale_boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """Geometry of one letterbox transform from an original image to the model input."""

    orig_hw: Tuple[int, int]
    new_unpad_wh: Tuple[int, int]
    top: int
    bottom: int
    left: int
    right: int

    @property
    def gain_xy(self) -> Tuple[float, float]:
        """Per-axis scale from original to resized pixels, as scale_boxes derives it."""
        return self.new_unpad_wh[0] / self.orig_hw[1], self.new_unpad_wh[1] / self.orig_hw[0]


def plan(
    orig_hw: Tuple[int, int],
    new_hw: Tuple[int, int],
    scaleup: bool = True,
    center: bool = True,
    auto: bool = False,
    stride: int = 32,
) -> Letterbox:
    """Compute the letterbox geometry (no pixels touched)."""
    h0, w0 = orig_hw
    r = min(new_hw[0] / h0, new_hw[1] / w0)
    if not scaleup:
        r = min(r, 1.0)
    new_unpad = (max(round(w0 * r), 1), max(round(h0 * r), 1))
    dw, dh = new_hw[1] - new_unpad[0], new_hw[0] - new_unpad[1]
    if auto:
        dw, dh = int(np.mod(dw, stride)), int(np.mod(dh, stride))
    if center:
        dw /= 2
        dh /= 2
    top, bottom = (round(dh - 0.1) if center else 0), round(dh + 0.1)
    left, right = (round(dw - 0.1) if center else 0), round(dw + 0.1)
    return Letterbox((h0, w0), new_unpad, top, bottom, left, right)


def apply(image: np.ndarray, box: Letterbox, pad_value: int = 114) -> np.ndarray:
    """Resize and pad a (H, W, 3) or (H, W) uint8 image according to `box`."""
    if (image.shape[1], image.shape[0]) != box.new_unpad_wh:
        image = cv2.resize(image, box.new_unpad_wh, interpolation=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(
        image, box.top, box.bottom, box.left, box.right, cv2.BORDER_CONSTANT,
        value=(pad_value, pad_value, pad_value),
    )


def letterbox(
    image: np.ndarray,
    new_hw: Tuple[int, int],
    pad_value: int = 114,
    scaleup: bool = True,
    center: bool = True,
    auto: bool = False,
    stride: int = 32,
) -> Tuple[np.ndarray, Letterbox]:
    """Letterboxed image and its geometry."""
    box = plan(image.shape[:2], new_hw, scaleup=scaleup, center=center, auto=auto, stride=stride)
    return apply(image, box, pad_value), box
