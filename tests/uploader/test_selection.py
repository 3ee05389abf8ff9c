"""Which results send their image to review."""

from __future__ import annotations

from shared.messages import Detection, InspectionResult
from vqi_uploader.selection import (
    REASON_DEFECT,
    REASON_DRIFT,
    REASON_UNCERTAIN,
    SelectionRules,
    review_reason,
    sample_fraction,
)

NO_SAMPLE = SelectionRules(uncertainty_low=0.3, uncertainty_high=0.6, ok_sample_rate=0.0)


def result(verdict: str, *scores: float, image_id: str = "img-1") -> InspectionResult:
    dets = [Detection(0, "scratch", s, [0, 0, 10, 10], [0, 0, 0.1, 0.1]) for s in scores]
    return InspectionResult(image_id=image_id, path="/x.jpg", verdict=verdict, detections=dets)


def test_every_defect_is_selected_whatever_its_score():
    for score in (0.05, 0.45, 0.99):
        assert review_reason(result("DEFECT", score), NO_SAMPLE) == REASON_DEFECT


def test_defects_can_be_switched_off_but_uncertain_defects_still_go():
    rules = SelectionRules(review_defects=False, ok_sample_rate=0.0)
    assert review_reason(result("DEFECT", 0.95), rules) is None
    assert review_reason(result("DEFECT", 0.4), rules) == REASON_UNCERTAIN


def test_uncertainty_band_includes_low_and_excludes_high():
    assert review_reason(result("OK", 0.3), NO_SAMPLE) == REASON_UNCERTAIN
    assert review_reason(result("OK", 0.5999), NO_SAMPLE) == REASON_UNCERTAIN
    assert review_reason(result("OK", 0.6), NO_SAMPLE) is None
    assert review_reason(result("OK", 0.2999), NO_SAMPLE) is None


def test_band_uses_the_top_score():
    assert review_reason(result("OK", 0.1, 0.45, 0.2), NO_SAMPLE) == REASON_UNCERTAIN
    assert review_reason(result("OK", 0.45, 0.7), NO_SAMPLE) is None


def test_ok_without_detections_is_not_uncertain_even_with_a_zero_low_bound():
    rules = SelectionRules(uncertainty_low=0.0, uncertainty_high=0.5, ok_sample_rate=0.0)
    assert review_reason(result("OK"), rules) is None


def test_error_results_are_never_selected():
    everything = SelectionRules(uncertainty_low=0.0, uncertainty_high=1.0, ok_sample_rate=1.0)
    error = InspectionResult(image_id="e", path="/e.jpg", verdict="ERROR", error="decode failed")
    assert review_reason(error, everything) is None


def test_ok_sample_rate_one_selects_every_ok_and_zero_none():
    ids = [f"cam1-{i:05d}" for i in range(200)]
    all_rules = SelectionRules(ok_sample_rate=1.0)
    none_rules = SelectionRules(ok_sample_rate=0.0)
    assert all(review_reason(result("OK", image_id=i), all_rules) == REASON_DRIFT for i in ids)
    assert all(review_reason(result("OK", image_id=i), none_rules) is None for i in ids)


def test_ok_sample_picks_about_the_configured_fraction():
    rules = SelectionRules(ok_sample_rate=0.1)
    picked = sum(
        review_reason(result("OK", image_id=f"img-{i}"), rules) == REASON_DRIFT
        for i in range(5000)
    )
    assert 400 <= picked <= 600


def test_sample_decision_is_stable_per_image_id_and_changes_with_the_seed():
    rules = SelectionRules(ok_sample_rate=0.3, seed="line-7")
    first = [review_reason(result("OK", image_id=f"i{i}"), rules) for i in range(300)]
    again = [review_reason(result("OK", image_id=f"i{i}"), rules) for i in range(300)]
    assert first == again
    assert sample_fraction("i1", "line-7") == sample_fraction("i1", "line-7")
    other = [sample_fraction(f"i{i}", "line-8") for i in range(300)]
    assert other != [sample_fraction(f"i{i}", "line-7") for i in range(300)]


def test_sample_is_exactly_the_images_whose_hash_is_below_the_rate():
    rules = SelectionRules(ok_sample_rate=0.25, seed="s")
    for i in range(500):
        image_id = f"tag-{i}"
        expected = REASON_DRIFT if sample_fraction(image_id, "s") < 0.25 else None
        assert review_reason(result("OK", image_id=image_id), rules) == expected
