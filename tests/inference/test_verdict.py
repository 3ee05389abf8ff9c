"""Verdict rules: DEFECT when any rule matches, configuration errors name the bad rule."""

from __future__ import annotations

import pytest

from vqi_inference.verdict import DEFECT, OK, Finding, decide, parse_rules

NAMES = ["scratch", "dent", "stain"]
AREA = 1000.0 * 1000.0


def rules(*raw: dict):
    return parse_rules(list(raw), NAMES)


def test_no_rules_any_detection_is_a_defect() -> None:
    assert decide([Finding("stain", 0.3, 10)], (), AREA) == DEFECT
    assert decide([], (), AREA) == OK


def test_rule_limited_to_listed_classes() -> None:
    r = rules({"Classes": ["scratch"]})
    assert decide([Finding("stain", 0.9, 500)], r, AREA) == OK
    assert decide([Finding("scratch", 0.9, 500)], r, AREA) == DEFECT


def test_min_score_is_inclusive() -> None:
    r = rules({"MinScore": 0.5})
    assert decide([Finding("dent", 0.5, 1)], r, AREA) == DEFECT
    assert decide([Finding("dent", 0.49, 1)], r, AREA) == OK


def test_min_area_in_pixels_and_as_fraction() -> None:
    assert decide([Finding("dent", 0.9, 99)], rules({"MinAreaPx": 100}), AREA) == OK
    assert decide([Finding("dent", 0.9, 100)], rules({"MinAreaPx": 100}), AREA) == DEFECT
    frac = rules({"MinAreaFraction": 0.01})
    assert decide([Finding("dent", 0.9, 9999)], frac, AREA) == OK
    assert decide([Finding("dent", 0.9, 10000)], frac, AREA) == DEFECT


def test_min_count_counts_only_qualifying_detections() -> None:
    r = rules({"Classes": ["stain"], "MinScore": 0.4, "MinCount": 2})
    one = [Finding("stain", 0.9, 5), Finding("stain", 0.3, 5), Finding("dent", 0.9, 5)]
    assert decide(one, r, AREA) == OK
    assert decide(one + [Finding("stain", 0.41, 5)], r, AREA) == DEFECT


def test_any_matching_rule_makes_a_defect() -> None:
    r = rules({"Classes": ["scratch"], "MinScore": 0.8}, {"Classes": ["dent"], "MinScore": 0.3})
    assert decide([Finding("dent", 0.35, 5)], r, AREA) == DEFECT
    assert decide([Finding("scratch", 0.35, 5)], r, AREA) == OK


@pytest.mark.parametrize("bad,message", [
    ({"Classes": ["rust"]}, "not model classes"),
    ({"MinScore": 1.5}, "MinScore"),
    ({"MinScore": "high"}, "MinScore"),
    ({"MinCount": 0}, "MinCount"),
    ({"Colour": "red"}, "unknown keys"),
    ("scratch", "must be an object"),
])
def test_bad_rules_are_rejected_with_the_reason(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rules([{"MinScore": 0.1}, bad], NAMES)
