"""Candidate selection, NMS, max_det and per-class thresholds against hand cases and Ultralytics."""

from __future__ import annotations

import numpy as np
import pytest

from vqi_inference import postprocess
from vqi_inference.postprocess import Thresholds


def raw_from(boxes_xyxy: list, scores: list) -> np.ndarray:
    """(4 + nc, N) raw output from xyxy boxes and per-class score rows."""
    b = np.asarray(boxes_xyxy, np.float32)
    cxcywh = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0],
                       b[:, 3] - b[:, 1]])
    return np.concatenate([cxcywh, np.asarray(scores, np.float32).T]).astype(np.float32)


def thr(nc: int, conf: float = 0.25, **kw: object) -> Thresholds:
    return Thresholds(per_class=np.full(nc, conf, np.float32), **kw)


def test_overlapping_boxes_of_one_class_keep_the_best() -> None:
    raw = raw_from([[0, 0, 100, 100], [5, 5, 105, 105], [300, 300, 350, 350]],
                   [[0.9], [0.8], [0.7]])
    found = postprocess.select(raw, thr(1, iou=0.5))
    assert found.scores.tolist() == pytest.approx([0.9, 0.7])


def test_class_aware_nms_keeps_overlapping_boxes_of_different_classes() -> None:
    raw = raw_from([[0, 0, 100, 100], [5, 5, 105, 105]], [[0.9, 0.1], [0.1, 0.8]])
    assert len(postprocess.select(raw, thr(2, iou=0.5))) == 2
    assert len(postprocess.select(raw, thr(2, iou=0.5, agnostic=True))) == 1


def test_threshold_is_strictly_greater_than() -> None:
    raw = raw_from([[0, 0, 10, 10], [50, 50, 60, 60]], [[0.25], [0.2501]])
    found = postprocess.select(raw, thr(1, conf=0.25))
    assert found.scores.tolist() == pytest.approx([0.2501])


def test_iou_equal_to_threshold_is_not_suppressed() -> None:
    # Two 10x10 boxes overlapping by 5x10: IoU = 50 / 150 = 1/3.
    raw = raw_from([[0, 0, 10, 10], [5, 0, 15, 10]], [[0.9], [0.8]])
    assert len(postprocess.select(raw, thr(1, iou=0.34))) == 2
    assert len(postprocess.select(raw, thr(1, iou=0.33))) == 1


def test_per_class_threshold_applies_to_that_class_only() -> None:
    raw = raw_from([[0, 0, 10, 10], [50, 50, 60, 60]], [[0.6, 0.0], [0.0, 0.6]])
    per_class = np.asarray([0.7, 0.5], np.float32)
    found = postprocess.select(raw, Thresholds(per_class=per_class))
    assert found.classes.tolist() == [1]


def test_max_detections_keeps_the_highest_scores() -> None:
    boxes = [[i * 20, 0, i * 20 + 10, 10] for i in range(10)]
    scores = [[0.3 + 0.05 * i] for i in range(10)]
    found = postprocess.select(raw_from(boxes, scores), thr(1, max_detections=3))
    assert found.scores.tolist() == pytest.approx([0.75, 0.7, 0.65])


def test_nothing_above_threshold_gives_no_detections() -> None:
    raw = raw_from([[0, 0, 10, 10]], [[0.1, 0.2]])
    assert len(postprocess.select(raw, thr(2))) == 0


@pytest.mark.toolchain
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("agnostic", [False, True])
def test_matches_ultralytics_nms_on_random_outputs(seed: int, agnostic: bool) -> None:
    import torch
    from ultralytics.utils.nms import non_max_suppression

    rng = np.random.default_rng(seed)
    nc, n = 3, 2100
    centres = rng.uniform(0, 320, (2, n))
    sizes = rng.uniform(4, 120, (2, n))
    scores = rng.uniform(0, 1, (nc, n)) ** 4  # mostly low, some high, like a real head
    raw = np.concatenate([centres, sizes, scores]).astype(np.float32)
    ours = postprocess.select(raw, thr(nc, 0.25, iou=0.45, max_detections=100,
                                      agnostic=agnostic))
    ref = non_max_suppression(torch.from_numpy(raw[None].copy()), 0.25, 0.45, agnostic=agnostic,
                              max_det=100)[0].numpy()
    assert len(ours) == len(ref) > 10
    np.testing.assert_allclose(ours.boxes, ref[:, :4], atol=1e-4)
    np.testing.assert_allclose(ours.scores, ref[:, 4], atol=1e-7)
    assert ours.classes.tolist() == ref[:, 5].astype(int).tolist()
