"""Helpers for the inference tests: paths and real image files (fixtures live in conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "components" / "model"
SCHEMA_PATH = ROOT / "shared" / "schemas" / "inference-result.schema.json"


def textured_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A BGR image with smooth texture and a few solid shapes (gives the model something)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 3)
    for _ in range(6):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(img, centre, int(rng.integers(3, max(4, min(h, w) // 3))), colour, -1)
    return img


def write_image(path: Path, image: np.ndarray, params: Any = None) -> Path:
    ok, data = cv2.imencode(path.suffix, image, params or [])
    assert ok, path
    path.write_bytes(data.tobytes())
    return path


def blind_model(folder: Path, version: str = "9.0.0-blind") -> Path:
    """The shipped model's weights with a confidence threshold no scratch reaches, so every
    defective sample comes out OK: the model that fails the acceptance set, or disagrees as a
    challenger. Returns `folder` (model.onnx + model.json)."""
    import json
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO_MODEL / "model.onnx", folder / "model.onnx")
    meta = json.loads((DEMO_MODEL / "model.json").read_text())
    meta["thresholds"]["confidence"] = 0.999
    meta["version"] = version
    (folder / "model.json").write_text(json.dumps(meta))
    return folder
