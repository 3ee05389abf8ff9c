"""The committed demo model tells the committed defective samples from the good ones, on the
device's detection path with the thresholds model.json ships."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vqi_inference import settings
from vqi_inference.postprocess import box_iou
from vqitools.model.evaluate import Job, Limits, Runner, open_model

COMPONENT = Path(__file__).resolve().parents[2] / "components" / "model"
EXPECTED = json.loads((COMPONENT / "samples" / "expected.json").read_text())["images"]


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(open_model(COMPONENT))


def _detect(runner: Runner, name: str) -> np.ndarray:
    # The thresholds the component resolves from model.json with its default configuration.
    thresholds = settings.resolve(settings.parse({}), runner.model.spec).thresholds
    outcome = runner.run_one(Job(name, str(COMPONENT / "samples" / name)), Limits(thresholds))
    assert outcome.error is None, outcome.error
    return outcome.detections.boxes


def test_samples_hold_both_kinds_and_are_small() -> None:
    assert sum(bool(b) for b in EXPECTED.values()) >= 4
    assert sum(not b for b in EXPECTED.values()) >= 3
    assert all((COMPONENT / "samples" / n).stat().st_size < 100_000 for n in EXPECTED)


@pytest.mark.parametrize("name", sorted(n for n, b in EXPECTED.items() if b))
def test_defective_sample_is_flagged_where_the_scratch_is(runner: Runner, name: str) -> None:
    boxes = _detect(runner, name)
    assert len(boxes) >= 1
    best = box_iou(np.asarray(EXPECTED[name]), boxes).max(axis=1)
    assert best.max() >= 0.5


@pytest.mark.parametrize("name", sorted(n for n, b in EXPECTED.items() if not b))
def test_good_sample_has_no_detection(runner: Runner, name: str) -> None:
    assert len(_detect(runner, name)) == 0
