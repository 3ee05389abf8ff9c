"""Camera health from one image: brightness, contrast and sharpness of the area the model sees.

Measured on a copy shrunk to at most 320 px on its long side (0.5 ms for a 320 px image, 0.6 ms
for 1080p on the 2-core dev machine); the model's reference statistics (model.json
`reference.input`) are measured by the same function on its validation images. Sharpness depends
on the camera and optics, so the reference should come from images of the same camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIDE = 320


@dataclass(frozen=True)
class ImageStats:
    brightness: float  # mean grey level, 0..255
    contrast: float  # standard deviation of the grey levels
    sharpness: float  # variance of the Laplacian (low: out of focus)


def measure(image: np.ndarray) -> ImageStats:
    """Stats of a decoded BGR (or grey) uint8 image."""
    h, w = image.shape[:2]
    scale = SIDE / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_LINEAR)  # INTER_AREA: 10x the cost
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    mean, std = cv2.meanStdDev(grey)
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F))
    return ImageStats(round(float(mean[0, 0]), 3), round(float(std[0, 0]), 3),
                      round(float(lap_std[0, 0]) ** 2, 3))
