"""Parity with Ultralytics: same ONNX file, same images -> same boxes, classes and scores.

Tolerance (stated): the same number of detections, identical classes, scores within 1e-4 and box
corners within 0.05 px of ultralytics' YOLO(model.onnx).predict(). Pre-processing is designed to be
bit-identical, so in practice the difference is 0.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List

import numpy as np
import pytest

from vqi_inference import model as M
from vqi_inference import pipeline as P
from vqi_inference import results, settings

from .helpers import DEMO_MODEL, textured_image, write_image

pytestmark = pytest.mark.toolchain

SCORE_TOL = 1e-4
BOX_TOL_PX = 0.05
SIZES = [(480, 640), (1000, 300), (317, 1203), (320, 320), (77, 91), (1536, 2048), (900, 899)]


def make_images(folder: Path) -> List[Path]:
    paths = []
    for i, (h, w) in enumerate(SIZES):
        suffix = ".jpg" if i % 2 else ".png"
        paths.append(write_image(folder / f"img{i}{suffix}", textured_image(h, w, seed=i)))
    gray = textured_image(240, 360, seed=99)[:, :, 0]
    paths.append(write_image(folder / "gray.png", gray))
    return paths


def compare(model_dir: Path, images: List[Path], assert_valid_result,
            confidence: float = -1.0) -> int:
    """Compare every image; returns how many detections were compared."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    loaded = M.load(str(model_dir), M.SessionSettings(intra_op_threads=1))
    eff = settings.resolve(settings.parse({"ConfidenceThreshold": confidence}), loaded.spec)
    conf = float(eff.thresholds.per_class.max())
    runner = P.Runner(loaded)
    reference = YOLO(str(model_dir / "model.onnx"), task="detect")
    spec = loaded.spec
    total = 0
    for path in images:
        ours = runner.run_one(P.Job(path.name, str(path)), P.Limits(eff.thresholds))
        assert ours.error is None, ours.error
        ref = reference.predict(str(path), imgsz=list(spec.imgsz), conf=conf,
                                iou=spec.iou, max_det=spec.max_detections, verbose=False)[0]
        boxes = ref.boxes
        found = ours.detections
        assert len(found) == len(boxes), path.name
        assert found.classes.tolist() == boxes.cls.numpy().astype(int).tolist(), path.name
        np.testing.assert_allclose(found.scores, boxes.conf.numpy(), atol=SCORE_TOL)
        np.testing.assert_allclose(found.boxes, boxes.xyxy.numpy(), atol=BOX_TOL_PX)
        assert ours.orig_hw == tuple(ref.orig_shape)
        assert_valid_result(results.build(ours, spec, eff.rules, "thing").to_dict())
        total += len(found)
    return total


def test_dev_model_matches_ultralytics_predict(dev_model_dir: Path, tmp_path: Path,
                                               assert_valid_result) -> None:
    detections = compare(dev_model_dir, make_images(tmp_path), assert_valid_result)
    assert detections > 0  # the comparison covered real boxes, not just empty lists


@pytest.mark.skipif(not (DEMO_MODEL / "model.onnx").is_file(),
                    reason="demo model components/model/model.onnx not built yet")
def test_demo_model_matches_ultralytics_predict(tmp_path: Path, assert_valid_result) -> None:
    meta = json.loads((DEMO_MODEL / "model.json").read_text())
    samples = sorted(p for p in (DEMO_MODEL / "samples").glob("*")
                     if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    assert samples, "demo model has no samples/"
    images = samples[:12] + make_images(tmp_path)[:3]
    compare(DEMO_MODEL, images, assert_valid_result)  # the model's own operating point
    # A low threshold as well, so many boxes are compared even if the model is weak.
    detections = compare(DEMO_MODEL, images, assert_valid_result, confidence=0.01)
    assert detections > 0, f"demo model {meta.get('name')} found nothing on its samples"
