"""The inspection region: the part of each frame the model looks at (InspectionRegion).

A fixed camera sees the fixture around the part (clamps, bars, the belt) in the same place in
every frame; bright edges there are the commonest false alarm. The region is cut out before the
letterbox, so the model also sees the part larger, and boxes are mapped back to the full frame.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

Region = Tuple[float, float, float, float]  # x, y, width, height as fractions of the frame
Pixels = Tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in frame pixels


def parse(value: Sequence[float]) -> Optional[Region]:
    """[] -> None (the whole frame); [x, y, w, h] in 0..1 that fits in it; else ValueError."""
    if not value:
        return None
    if len(value) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                  for v in value):
        raise ValueError("must be [] or [x, y, width, height] as fractions of the frame")
    x, y, w, h = (float(v) for v in value)
    if not (0 <= x < 1 and 0 <= y < 1 and w > 0 and h > 0 and x + w <= 1 + 1e-9
            and y + h <= 1 + 1e-9):
        raise ValueError(f"{list(value)} does not fit in the frame (x, y >= 0, width and "
                         "height > 0, x + width <= 1, y + height <= 1)")
    return (x, y, w, h)


def pixels(region: Region, hw: Tuple[int, int]) -> Pixels:
    """Whole pixels covering the region (outward rounding), at least one pixel."""
    height, width = hw
    x, y, w, h = region
    x0 = min(width - 1, max(0, math.floor(x * width)))
    y0 = min(height - 1, max(0, math.floor(y * height)))
    x1 = max(x0 + 1, min(width, math.ceil((x + w) * width - 1e-9)))
    y1 = max(y0 + 1, min(height, math.ceil((y + h) * height - 1e-9)))
    return x0, y0, x1, y1


def to_frame(boxes: np.ndarray, px: Pixels) -> np.ndarray:
    """xyxy boxes in region pixels -> frame pixels."""
    return boxes + np.asarray([px[0], px[1], px[0], px[1]], dtype=boxes.dtype)
