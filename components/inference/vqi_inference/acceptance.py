"""The golden-sample gate: a model inspects parts only after it gives the expected verdicts on
its own acceptance set, through the same path and settings as every live image.

The set is the Model component's `samples/` folder (artifact `samples.zip`): images and an
`expected.json`:

    {"box_iou": 0.5,                      # optional; 0 or absent: verdicts only
     "images": {"defective_01.jpg": [[x1, y1, x2, y2], ...],   # boxes: expected DEFECT
                "good_01.jpg": [],                              # no boxes: expected OK
                "odd.jpg": {"verdict": "DEFECT"}}}              # a verdict without boxes

A sample passes when its verdict matches and, for one with boxes and a `box_iou`, some detection
overlaps one of its boxes at that IoU or more (crossing scratches may come out as one box).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from shared.component import StartError
from shared.messages import VERDICT_DEFECT, VERDICT_OK, InspectionResult

from .pipeline import Job, Limits, Outcome
from .postprocess import box_iou

POLICIES = ("REQUIRE", "WARN", "OFF")
EXPECTED_FILE = "expected.json"


class AcceptanceError(StartError):
    """No usable acceptance set where the Model component should ship one."""


@dataclass(frozen=True)
class Sample:
    name: str
    path: Path
    verdict: str
    boxes: Tuple[Tuple[float, float, float, float], ...] = ()


@dataclass(frozen=True)
class AcceptanceSet:
    folder: Path
    samples: Tuple[Sample, ...]
    box_iou: float = 0.0


@dataclass(frozen=True)
class Report:
    """One run of the gate: which samples failed and why."""

    samples: int
    failures: Tuple[str, ...]
    elapsed_ms: float

    @property
    def passed(self) -> bool:
        return not self.failures


def _box(value: Any, where: str) -> Tuple[float, float, float, float]:
    if (not isinstance(value, list) or len(value) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise AcceptanceError(f"{where}: a box must be [x1, y1, x2, y2] in pixels")
    x1, y1, x2, y2 = (float(v) for v in value)
    if x2 <= x1 or y2 <= y1:
        raise AcceptanceError(f"{where}: box {value} has no area")
    return x1, y1, x2, y2


def _sample(folder: Path, name: str, entry: Any) -> Sample:
    where = f"{folder / EXPECTED_FILE}: {name}"
    if Path(name).name != name or name in ("", ".", ".."):
        raise AcceptanceError(f"{where}: must be a file name in the folder")
    if isinstance(entry, list):
        boxes = tuple(_box(b, where) for b in entry)
        verdict = VERDICT_DEFECT if boxes else VERDICT_OK
    elif isinstance(entry, dict) and entry.get("verdict") in (VERDICT_OK, VERDICT_DEFECT):
        boxes = tuple(_box(b, where) for b in entry.get("boxes", []))
        verdict = entry["verdict"]
        if boxes and verdict == VERDICT_OK:
            raise AcceptanceError(f"{where}: an OK sample cannot have boxes")
    else:
        raise AcceptanceError(f"{where}: expected a list of boxes or "
                              '{"verdict": "OK"|"DEFECT", "boxes": [...]}')
    path = folder / name
    if not path.is_file():
        raise AcceptanceError(f"{where}: the image is missing")
    return Sample(name, path, verdict, boxes)


def load(folder: Optional[str]) -> AcceptanceSet:
    """Read and check the acceptance set; AcceptanceError says what is wrong."""
    if not folder:
        raise AcceptanceError("VQI_ACCEPTANCE_DIR is not set: the recipe's setEnv gives it "
                              "from the Model component's samples.zip")
    root = Path(folder)
    try:
        raw = json.loads((root / EXPECTED_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AcceptanceError(f"no acceptance set: {root / EXPECTED_FILE} is missing (does this "
                              "Model version ship samples.zip?)") from None
    except (OSError, ValueError) as exc:
        raise AcceptanceError(f"{root / EXPECTED_FILE}: unreadable: {exc}") from None
    images = raw.get("images") if isinstance(raw, dict) else None
    if not isinstance(images, dict) or not images:
        raise AcceptanceError(f"{root / EXPECTED_FILE}: 'images' must map file names to "
                              "expectations")
    box_iou = raw.get("box_iou", 0.0)
    if isinstance(box_iou, bool) or not isinstance(box_iou, (int, float)) or not 0 <= box_iou <= 1:
        raise AcceptanceError(f"{root / EXPECTED_FILE}: box_iou must be in [0, 1]")
    samples = tuple(_sample(root, n, images[n]) for n in sorted(images))
    return AcceptanceSet(root, samples, float(box_iou))


def judge(sample: Sample, result: InspectionResult, min_iou: float) -> Optional[str]:
    """Why `result` does not meet the sample's expectation, or None."""
    if result.error:
        return f"{sample.name}: {result.error}"
    if result.verdict != sample.verdict:
        scores = ", ".join(f"{d.score:.2f}" for d in result.detections) or "none"
        return (f"{sample.name}: expected {sample.verdict}, got {result.verdict} "
                f"(detections: {scores})")
    if sample.boxes and min_iou > 0:
        found = [d.box for d in result.detections]
        best = float(box_iou(np.asarray(sample.boxes), np.asarray(found)).max()) if found else 0.0
        if best < min_iou:
            return (f"{sample.name}: no detection overlaps an expected box at IoU >= "
                    f"{min_iou:g} (best {best:.2f})")
    return None


def run(acceptance: AcceptanceSet, run_one: Callable[[Job, Limits], Outcome], limits: Limits,
        build: Callable[[Outcome], InspectionResult]) -> Report:
    """Every sample through `run_one` (the pipeline's Runner) and `build` (the result message
    the service would publish): the verdict is the one a live image would get."""
    start = time.perf_counter()
    failures: List[str] = []
    for sample in acceptance.samples:
        outcome = run_one(Job(f"acceptance:{sample.name}", str(sample.path)), limits)
        problem = judge(sample, build(outcome), acceptance.box_iou)
        if problem:
            failures.append(problem)
    return Report(len(acceptance.samples), tuple(failures),
                  round((time.perf_counter() - start) * 1000, 1))


def summary(report: Report) -> Dict[str, Any]:
    return {"samples": report.samples, "failed": len(report.failures),
            "failures": list(report.failures), "elapsed_ms": report.elapsed_ms}
