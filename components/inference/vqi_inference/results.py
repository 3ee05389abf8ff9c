"""Pipeline outcome -> shared.messages.InspectionResult (the message on the results topic)."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from shared.messages import (
    VERDICT_ERROR,
    Detection,
    ImageEvent,
    InspectionResult,
    ModelInfo,
)

from .model import ModelSpec
from .pipeline import Outcome
from .postprocess import normalised
from .verdict import DefectRule, Finding, decide


def model_info(spec: ModelSpec) -> ModelInfo:
    return ModelInfo(name=spec.name, version=spec.version, sha256=spec.sha256)


def detections(outcome: Outcome, class_names: Sequence[str]) -> List[Detection]:
    found = outcome.detections
    if found is None or not len(found) or outcome.orig_hw is None:
        return []
    norm = normalised(found.boxes, outcome.orig_hw)
    return [
        Detection(
            class_id=int(c), class_name=class_names[int(c)], score=round(float(s), 5),
            box=[round(float(v), 2) for v in b], box_norm=[round(float(v), 6) for v in n],
        )
        for b, n, s, c in zip(found.boxes, norm, found.scores, found.classes)
    ]


def findings(dets: Sequence[Detection]) -> List[Finding]:
    return [
        Finding(d.class_name, d.score,
                max(0.0, d.box[2] - d.box[0]) * max(0.0, d.box[3] - d.box[1]))
        for d in dets
    ]


def build(
    outcome: Outcome, spec: ModelSpec, rules: Tuple[DefectRule, ...], thing_name: str,
    provenance: Optional[Dict[str, str]] = None,
) -> InspectionResult:
    """The result message for one outcome: a verdict, or ERROR with the reason."""
    event = outcome.job.context
    camera = event.camera_id if isinstance(event, ImageEvent) else ""
    timings = dict(outcome.timings_ms)
    if outcome.error is not None:
        return InspectionResult(
            image_id=outcome.job.image_id, path=outcome.job.path, verdict=VERDICT_ERROR,
            model=model_info(spec), timings_ms=timings, camera_id=camera,
            error=str(outcome.error), thing_name=thing_name, provenance=dict(provenance or {}),
        )
    dets = detections(outcome, spec.class_names)
    h, w = outcome.orig_hw or (0, 0)
    return InspectionResult(
        image_id=outcome.job.image_id, path=outcome.job.path,
        verdict=decide(findings(dets), rules, float(h * w)), detections=dets,
        model=model_info(spec), timings_ms=timings, image_width=int(w), image_height=int(h),
        camera_id=camera, thing_name=thing_name, provenance=dict(provenance or {}),
    )
