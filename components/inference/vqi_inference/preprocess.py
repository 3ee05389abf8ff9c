"""Turn a letterboxed 8-bit BGR (or single-channel gray) image into the model's input tensor,
in place.

Writing into a preallocated buffer keeps memory flat: the pipeline owns a small pool of buffers and
never allocates a new float tensor per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

_INV255 = 1.0 / 255.0


@dataclass(frozen=True)
class Normalisation:
    """How pixel values map to model input: value = (pixel * scale - mean) / std, per channel."""

    color: str = "RGB"  # channel order the model expects
    scale: float = _INV255
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)

    @classmethod
    def from_values(
        cls, color: str, scale: float, mean: Sequence[float], std: Sequence[float]
    ) -> "Normalisation":
        return cls(color.upper(), float(scale), tuple(map(float, mean)), tuple(map(float, std)))


def to_tensor(image: np.ndarray, out: np.ndarray, norm: Normalisation) -> np.ndarray:
    """Fill `out` (1, 3, H, W) from `image`, (H, W, 3) uint8 BGR or (H, W) gray, and return it.

    Gray is scaled once and repeated into the three channels: the same values as its BGR
    expansion, for a third of the arithmetic."""
    target = out[0]
    exact = abs(norm.scale - _INV255) < 1e-12
    if image.ndim == 2:
        planes: np.ndarray = image[None]
        first = target[:1]
    else:
        planes = image.transpose(2, 0, 1)
        if norm.color == "RGB":
            planes = planes[::-1]
        first = target
    if exact:
        # Divide (not multiply by 1/255) so values equal Ultralytics' div_(255) bit for bit.
        np.divide(planes, np.float32(255.0), out=first, dtype=np.float32)
    else:
        np.multiply(planes, np.float32(norm.scale), out=first, dtype=np.float32)
    if image.ndim == 2:
        target[1:] = target[:1]
    if any(norm.mean):
        target -= np.asarray(norm.mean, dtype=np.float32)[:, None, None]
    if any(s != 1.0 for s in norm.std):
        target /= np.asarray(norm.std, dtype=np.float32)[:, None, None]
    return out
