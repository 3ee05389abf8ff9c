"""OK / DEFECT decision from detections by configurable rules.

An image is DEFECT when any rule matches: at least `MinCount` detections of the rule's classes
(any class when the list is empty) with score >= `MinScore`, box area >= `MinAreaPx` pixels and
area >= `MinAreaFraction` of the image. With no rules every detection is a defect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Iterable, List, Sequence, Tuple

OK = "OK"
DEFECT = "DEFECT"

_RULE_KEYS = {"Classes", "MinScore", "MinAreaPx", "MinAreaFraction", "MinCount"}


@dataclass(frozen=True)
class DefectRule:
    classes: FrozenSet[str] = frozenset()
    min_score: float = 0.0
    min_area_px: float = 0.0
    min_area_fraction: float = 0.0
    min_count: int = 1

    def matches(self, found: Iterable["Finding"], image_area: float) -> bool:
        count = 0
        for f in found:
            if self.classes and f.class_name not in self.classes:
                continue
            if f.score < self.min_score or f.area_px < self.min_area_px:
                continue
            if image_area > 0 and f.area_px / image_area < self.min_area_fraction:
                continue
            count += 1
            if count >= self.min_count:
                return True
        return False


@dataclass(frozen=True)
class Finding:
    class_name: str
    score: float
    area_px: float


def _number(rule: Dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = rule.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{key} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def parse_rules(raw: Sequence[Any], class_names: Sequence[str]) -> Tuple[DefectRule, ...]:
    """Rules from configuration (list of objects); ValueError names the first bad entry."""
    rules: List[DefectRule] = []
    for i, rule in enumerate(raw):
        if not isinstance(rule, dict):
            raise ValueError(f"DefectRules[{i}] must be an object")
        unknown = set(rule) - _RULE_KEYS
        if unknown:
            raise ValueError(f"DefectRules[{i}] has unknown keys {sorted(unknown)} "
                             f"(known: {sorted(_RULE_KEYS)})")
        classes = rule.get("Classes", [])
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"DefectRules[{i}].Classes must be a list of class names")
        missing = [c for c in classes if c not in class_names]
        if missing:
            raise ValueError(f"DefectRules[{i}].Classes {missing} are not model classes "
                             f"{list(class_names)}")
        try:
            count = _number(rule, "MinCount", 1, 1, 1e9)
            rules.append(DefectRule(
                classes=frozenset(classes),
                min_score=_number(rule, "MinScore", 0.0, 0.0, 1.0),
                min_area_px=_number(rule, "MinAreaPx", 0.0, 0.0, 1e12),
                min_area_fraction=_number(rule, "MinAreaFraction", 0.0, 0.0, 1.0),
                min_count=int(count),
            ))
        except ValueError as exc:
            raise ValueError(f"DefectRules[{i}]: {exc}") from None
    return tuple(rules)


def decide(found: Sequence[Finding], rules: Sequence[DefectRule], image_area: float) -> str:
    """DEFECT when any rule matches (or, with no rules, when anything was found)."""
    if not rules:
        return DEFECT if found else OK
    return DEFECT if any(rule.matches(found, image_area) for rule in rules) else OK
