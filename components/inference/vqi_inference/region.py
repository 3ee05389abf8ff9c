"""The inspection region: the part of each frame the model looks at.

A fixed camera sees the fixture around the part (clamps, bars, the belt) in the same place in
every frame; bright edges there are the commonest false alarm. The region is cut out before the
letterbox, so the model also sees the part larger, and boxes are mapped back to the full frame.
It is either fixed (InspectionRegion) or found in each frame (PartFinder: `find_part`, for a part
that is not always in the same place), or both (the part is looked for inside the fixed region).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import cv2
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
    """Whole pixels covering the region (outward rounding), at least one pixel, inside the
    frame (a region reaching past it is cut at its edge)."""
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


def crop(image: np.ndarray, fixed: Optional[Region], find: bool) -> Optional[Pixels]:
    """What the model is shown of a decoded frame, in frame pixels; None = the whole frame.
    The part is looked for inside the fixed region; where none is found, the fixed region (or
    the whole frame) is inspected, so nothing is skipped unseen."""
    outer = pixels(fixed, image.shape[:2]) if fixed is not None else None
    if not find:
        return outer
    seen = image if outer is None else image[outer[1]:outer[3], outer[0]:outer[2]]
    part = find_part(seen)
    if part is None:
        return outer
    if outer is None:
        return part
    return (outer[0] + part[0], outer[1] + part[1], outer[0] + part[2], outer[1] + part[3])


# The part finder works on a small grey copy: the part is the largest blob of one brightness
# class (Otsu) that survives a closing (FINDER_CLOSE of the copy's short side: it fills stamped
# text, holes and scratches, which would otherwise cut the part up) and then an opening as wide as
# FINDER_OPEN. The opening cuts thin links (cables, bars) to the fixture; a blob that touches
# all four frame edges is the background, not a part. Fixture blocks that touch the part and the
# frame edge are trimmed off the sides that reach the edge, where the blob is under half its
# widest.
FINDER_SIDE = 160
FINDER_CLOSE = 0.06
FINDER_OPEN = 0.15
FINDER_MIN_AREA = 0.10  # of the searched area
FINDER_MARGIN = 0.04  # of the part's box, on each side (a scratch may end at its edge)


def find_part(image: np.ndarray) -> Optional[Pixels]:
    """The bounding box of the part in `image` (H x W [x C], uint8), in its pixels; None when no
    blob is large enough to be a part (an empty fixture, a covered lens)."""
    height, width = image.shape[:2]
    step = max(1, min(height, width) // (2 * FINDER_SIDE))  # a cheap first cut of huge frames
    grey = image[::step, ::step]
    if grey.ndim == 3:
        grey = grey[:, :, 0] if grey.shape[2] == 1 else cv2.cvtColor(
            np.ascontiguousarray(grey[:, :, :3]), cv2.COLOR_BGR2GRAY)
    scale = FINDER_SIDE / max(grey.shape)
    if scale < 1:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    h, w = grey.shape[:2]
    if min(h, w) < 8:
        return None
    grey = cv2.GaussianBlur(grey, (5, 5), 0)
    level, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    closing, opening = (cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (max(3, round(f * min(h, w)) | 1),) * 2)
        for f in (FINDER_CLOSE, FINDER_OPEN))
    best: Optional[Tuple[int, np.ndarray, np.ndarray]] = None  # area, blob, its closed mask
    for mask in (grey > level, grey <= level):
        closed = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, closing)
        opened = cv2.morphologyEx(closed, cv2.MORPH_OPEN, opening)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
        for i in range(1, n):
            x, y, bw, bh, area = (int(v) for v in stats[i])
            edges = int(x == 0) + int(y == 0) + int(x + bw == w) + int(y + bh == h)
            if edges == 4 or area < FINDER_MIN_AREA * h * w:
                continue
            if best is None or area > best[0]:
                best = (area, labels == i, closed > 0)
    if best is None:
        return None
    # the opening rounds off the part's corners: take back what lies within its reach
    _, blob, closed = best
    blob = closed & (cv2.dilate(blob.astype(np.uint8), opening) > 0)
    ys, xs = np.nonzero(blob)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    x0, y0, x1, y1 = _trim(blob[y0:y1, x0:x1], (x0, y0, x1, y1), (h, w))
    mx, my = FINDER_MARGIN * (x1 - x0), FINDER_MARGIN * (y1 - y0)
    sx, sy = width / w, height / h
    return pixels(((x0 - mx) * sx / width, (y0 - my) * sy / height,
                   (x1 - x0 + 2 * mx) * sx / width, (y1 - y0 + 2 * my) * sy / height),
                  (height, width))


def _trim(blob: np.ndarray, box: Pixels, hw: Tuple[int, int]) -> Pixels:
    """Cut rows/columns under half the blob's widest off each side of `box` that reaches the
    frame edge: there the blob runs into the fixture, which a part inside the frame does not."""
    x0, y0, x1, y1 = box
    rows = np.flatnonzero(blob.sum(1) >= blob.sum(1).max() / 2)
    cols = np.flatnonzero(blob.sum(0) >= blob.sum(0).max() / 2)
    return (x0 + int(cols[0]) if x0 == 0 else x0, y0 + int(rows[0]) if y0 == 0 else y0,
            x0 + int(cols[-1]) + 1 if x1 == hw[1] else x1,
            y0 + int(rows[-1]) + 1 if y1 == hw[0] else y1)
