"""Which results send their image to S3 for human review (pure, deterministic).

Selected: every DEFECT; every result whose top detection score lies in the uncertainty band
[low, high); and a random sample of OK images for drift monitoring. The sample is drawn from a hash
of the image id, so a result delivered again (or on another run) gets the same answer. ERROR
results carry no usable detections and are never selected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

from shared.messages import VERDICT_DEFECT, VERDICT_OK, InspectionResult

REASON_DEFECT = "defect"
REASON_UNCERTAIN = "uncertain"
REASON_DRIFT = "drift_sample"


@dataclass(frozen=True)
class SelectionRules:
    review_defects: bool = True
    uncertainty_low: float = 0.3
    uncertainty_high: float = 0.6
    ok_sample_rate: float = 0.01
    seed: str = "vqi"


def sample_fraction(image_id: str, seed: str) -> float:
    """A stable number in [0, 1) for this image id; the same id always maps to the same number."""
    digest = hashlib.sha256(f"{seed}\x00{image_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / float(1 << 64)


def review_reason(result: InspectionResult, rules: SelectionRules) -> Optional[str]:
    """Why this result's image goes to review, or None when it does not."""
    if result.verdict == VERDICT_DEFECT and rules.review_defects:
        return REASON_DEFECT
    if result.verdict not in (VERDICT_OK, VERDICT_DEFECT):
        return None  # ERROR: no image worth labelling
    if result.detections and rules.uncertainty_low <= result.top_score < rules.uncertainty_high:
        return REASON_UNCERTAIN
    if result.verdict == VERDICT_OK and sample_fraction(result.image_id, rules.seed) < (
        rules.ok_sample_rate
    ):
        return REASON_DRIFT
    return None
