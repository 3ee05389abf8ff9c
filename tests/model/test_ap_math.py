"""The numpy mAP used for the model card: hand-made cases and a cross-check with Ultralytics."""

from __future__ import annotations

import numpy as np
import pytest

from vqitools.model.evaluate import (
    Accumulator,
    ap_per_class,
    average_precision,
    box_iou,
    match_image,
)

GT = np.array([[10, 10, 50, 30], [100, 100, 140, 180]], float)
GT_CLS = np.array([0, 0])


def _map(preds: list[tuple], gts: list[tuple]) -> dict[str, float]:
    acc = Accumulator.new()
    for (pb, ps, pc), (gb, gc) in zip(preds, gts):
        acc.add(np.asarray(pb, float).reshape(-1, 4), np.asarray(ps, float),
                np.asarray(pc, int), np.asarray(gb, float).reshape(-1, 4), np.asarray(gc, int))
    return acc.summary()


def test_perfect_detections_score_one() -> None:
    res = _map([(GT, [0.9, 0.8], GT_CLS)], [(GT, GT_CLS)])
    assert res == {"mAP50": 1.0, "mAP50-95": 1.0}


def test_no_detections_score_zero() -> None:
    res = _map([(np.zeros((0, 4)), [], [])], [(GT, GT_CLS)])
    assert res == {"mAP50": 0.0, "mAP50-95": 0.0}


def test_detections_far_from_every_box_score_zero() -> None:
    res = _map([([[200, 200, 220, 220]], [0.99], [0])], [(GT, GT_CLS)])
    assert res["mAP50"] == 0.0


def test_wrong_class_is_not_a_match() -> None:
    res = _map([(GT, [0.9, 0.8], [1, 1])], [(GT, GT_CLS)])
    assert res["mAP50"] == 0.0


def test_half_the_objects_found_gives_half_ap() -> None:
    # one GT found (score 0.9), one missed, a false positive at 0.5
    res = _map([([GT[0], [300, 300, 310, 310]], [0.9, 0.5], [0, 0])], [(GT, GT_CLS)])
    # precision 1 for recall 0..0.5 -> 51 of 101 COCO recall points
    assert res["mAP50"] == pytest.approx(51 / 101)


def test_false_positive_ranked_first_halves_precision() -> None:
    res = _map([([[300, 300, 310, 310], GT[0]], [0.9, 0.8], [0, 0])], [(GT[:1], [0])])
    assert res["mAP50"] == pytest.approx(0.5)


def test_all_point_ap_is_area_under_the_precision_envelope() -> None:
    recall = np.array([0.5, 0.5, 1.0])
    precision = np.array([1.0, 0.5, 2 / 3])
    assert average_precision(recall, precision, "all") == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_map50_95_counts_the_thresholds_a_box_passes() -> None:
    # IoU 0.8 passes the thresholds 0.50, 0.55, ..., 0.80: 7 of 10
    res = _map([([[0, 0, 10, 8]], [0.9], [0])], [([[0, 0, 10, 10]], [0])])
    assert res["mAP50"] == 1.0
    assert res["mAP50-95"] == pytest.approx(0.7)


def test_each_ground_truth_matches_only_once() -> None:
    tp = match_image(np.array([GT[0], GT[0]]), np.array([0.9, 0.8]), np.array([0, 0]),
                     GT[:1], np.array([0]), np.array([0.5]))
    assert tp[:, 0].tolist() == [True, False]


def test_box_iou() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10.5], [20, 20, 30, 30]], float)
    assert box_iou(a[:1], a[2:])[0, 0] == 0.0
    assert box_iou(a[:1], a[:1])[0, 0] == 1.0
    assert box_iou(a[:1], a[1:2])[0, 0] == pytest.approx(100 / 105)


@pytest.mark.toolchain
def test_ap_agrees_with_ultralytics_on_a_random_case() -> None:
    from ultralytics.utils.metrics import ap_per_class as ul_ap_per_class

    rng = np.random.default_rng(0)
    n_pred = 200
    tp = rng.random((n_pred, 10)) < np.linspace(0.8, 0.2, 10)
    tp = np.cumprod(tp, axis=1).astype(bool)  # a match at a high IoU implies the lower ones
    conf = rng.random(n_pred)
    pred_cls = rng.integers(0, 2, n_pred)
    target_cls = rng.integers(0, 2, 150)
    ours = np.stack(list(ap_per_class(tp, conf, pred_cls, target_cls).values()))
    theirs = ul_ap_per_class(tp, conf, pred_cls, target_cls)[5]
    # Ultralytics integrates the 101-point curve with the trapezoid rule, COCO averages it:
    # the two differ by well under one point of AP.
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 0.01
