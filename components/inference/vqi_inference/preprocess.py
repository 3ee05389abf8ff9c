"""Turn a letterboxed 8-bit BGR image into the model's input tensor, in place.

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
    """Fill `out` (1, 3, H, W) from `image` (H, W, 3) uint8 BGR and return it."""
    chw = image.transpose(2, 0, 1)
    if norm.color == "RGB":
        chw = chw[::-1]
    target = out[0]
    if abs(norm.scale - _INV255) < 1e-12:
        # Divide (not multiply by 1/255) so values equal Ultralytics' div_(255) bit for bit.
        np.divide(chw, np.float32(255.0), out=target, dtype=np.float32)
    else:
        np.multiply(chw, np.float32(norm.scale), out=target, dtype=np.float32)
    if any(norm.mean):
        target -= np.asarray(norm.mean, dtype=np.float32)[:, None, None]
    if any(s != 1.0 for s in norm.std):
        target /= np.asarray(norm.std, dtype=np.float32)[:, None, None]
    return out
