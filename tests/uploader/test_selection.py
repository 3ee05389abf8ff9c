"""Which results send their image to review."""

from __future__ import annotations

import hashlib

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


def reference_fraction(image_id: str, seed: str) -> float:
    """The documented sampling hash, derived here on its own: sha256 over the seed, a NUL byte
    and the image id; its first 64 bits (big-endian) as a fraction of 2**64."""
    digest = hashlib.sha256(seed.encode() + b"\0" + image_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def drift_samples(ids: list, rules: SelectionRules) -> list:
    return [i for i in ids if review_reason(result("OK", image_id=i), rules) == REASON_DRIFT]


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
    ids = [f"i{i}" for i in range(300)]
    first = drift_samples(ids, SelectionRules(ok_sample_rate=0.3, seed="line-7"))
    again = drift_samples(ids, SelectionRules(ok_sample_rate=0.3, seed="line-7"))
    other_seed = drift_samples(ids, SelectionRules(ok_sample_rate=0.3, seed="line-8"))
    assert first == again
    assert other_seed != first


def test_the_sample_a_seed_draws_is_the_same_in_every_release():
    """Pinned by hand: a result redelivered after an upgrade must be selected the same way."""
    ids = [f"tag-{i}" for i in range(20)]
    assert drift_samples(ids, SelectionRules(ok_sample_rate=0.25, seed="s")) == [
        "tag-6", "tag-10", "tag-11", "tag-18", "tag-19"]
    assert drift_samples(ids, SelectionRules(ok_sample_rate=0.25, seed="line-7")) == [
        "tag-6", "tag-10", "tag-11", "tag-13", "tag-16", "tag-17"]
    # sha256(b"vqi\0img-1") begins c5d32e7381f2d1d7
    assert sample_fraction("img-1", "vqi") == 0xC5D32E7381F2D1D7 / 2**64


def test_sample_is_exactly_the_images_whose_hash_is_below_the_rate():
    ids = [f"tag-{i}" for i in range(500)]
    expected = [i for i in ids if reference_fraction(i, "s") < 0.25]
    assert drift_samples(ids, SelectionRules(ok_sample_rate=0.25, seed="s")) == expected
