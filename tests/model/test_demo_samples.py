"""The committed demo model tells the committed defective samples from the good ones."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vqitools.model.evaluate import box_iou, load_model, postprocess, preprocess

COMPONENT = Path(__file__).resolve().parents[2] / "components" / "model"
EXPECTED = json.loads((COMPONENT / "samples" / "expected.json").read_text())["images"]


@pytest.fixture(scope="module")
def model() -> tuple[object, dict]:
    return load_model(COMPONENT)


def _detect(model: tuple[object, dict], name: str) -> np.ndarray:
    sess, meta = model
    img = cv2.imread(str(COMPONENT / "samples" / name))
    assert img is not None, name
    x, geo = preprocess(img, meta)
    thr = meta["thresholds"]
    boxes, _, _ = postprocess(sess.run(None, {meta["input"]["name"]: x})[0], geo,
                              img.shape[:2], thr["confidence"], thr["iou"])
    return boxes


def test_samples_hold_both_kinds_and_are_small() -> None:
    assert sum(bool(b) for b in EXPECTED.values()) >= 4
    assert sum(not b for b in EXPECTED.values()) >= 3
    assert all((COMPONENT / "samples" / n).stat().st_size < 100_000 for n in EXPECTED)


@pytest.mark.parametrize("name", sorted(n for n, b in EXPECTED.items() if b))
def test_defective_sample_is_flagged_where_the_scratch_is(model: tuple, name: str) -> None:
    boxes = _detect(model, name)
    assert len(boxes) >= 1
    best = box_iou(np.asarray(EXPECTED[name]), boxes).max(axis=1)
    assert best.max() >= 0.5


@pytest.mark.parametrize("name", sorted(n for n, b in EXPECTED.items() if not b))
def test_good_sample_has_no_detection(model: tuple, name: str) -> None:
    assert len(_detect(model, name)) == 0
