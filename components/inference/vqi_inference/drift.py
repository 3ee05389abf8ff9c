"""Drift and process alarms: each window of inspected images against the model's reference.

The reference (model.json `reference`, written by `scripts/model reference` from the validation
images through this same detection path) holds the defect rate, the distribution of each image's
top score and the input statistics of `imagestats`. Every `DriftWindowImages` inspected images
(errors not counted) the window is judged:

- `defect_rate`: the window's DEFECT share outside the p-chart limits
  p0 +- k * sqrt(p0 (1 - p0) / n) (p0: `ExpectedDefectRate`, or the reference's; k:
  `DriftPChartSigmas`). A burst of defects, or a line that suddenly finds none.
- `score_shift`: population stability index of the top-score histogram against the reference's
  above `DriftPsiThreshold` (0.1 is usually read as a moderate, 0.25 as a major shift).
- `brightness` / `contrast`: the window's mean outside the reference's [p05, p95] band of single
  images, widened on each side by `DriftInputTolerance` times the band's width (dark or
  over-exposed camera, lighting gone).
- `sharpness`: the window's median below the reference's p05 times (1 - `DriftInputTolerance`)
  (sharpness is heavy-tailed, so a ratio rather than the band): out of focus, a smeared lens.
A check that fails is RAISED once and CLEARED at the first window that passes again; a change of
state waits until `AlertMinIntervalSeconds` have passed since that check's last message.
Pure functions here; the service publishes what `DriftMonitor.observe` returns.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from shared.messages import ALERT_CLEARED, ALERT_RAISED, VERDICT_DEFECT
from shared.metrics import quantile

from .imagestats import ImageStats

INPUTS = ("brightness", "contrast", "sharpness")
# Top score per image: below the shipped confidence (nothing found), then four bands. Few wide
# bins: PSI over many narrow bins is mostly noise on a window of a few hundred images.
SCORE_BINS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0000001)


@dataclass(frozen=True)
class Band:
    mean: float
    std: float
    p05: float
    p50: float
    p95: float


@dataclass(frozen=True)
class Reference:
    images: int
    defect_rate: float
    score_bins: Tuple[float, ...]
    score_hist: Tuple[float, ...]
    inputs: Dict[str, Band]

    @classmethod
    def from_json(cls, raw: Any) -> "Reference":
        """model.json `reference`; ValueError says what is wrong."""
        try:
            bins = tuple(float(v) for v in raw["score_bins"])
            hist = tuple(float(v) for v in raw["score_hist"])
            inputs = {k: Band(**{f: float(raw["input"][k][f])
                                 for f in ("mean", "std", "p05", "p50", "p95")})
                      for k in INPUTS}
            ref = cls(int(raw["images"]), float(raw["defect_rate"]), bins, hist, inputs)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"model.json reference is incomplete or malformed: {exc!r}") from None
        if len(bins) != len(hist) + 1 or not 0 <= ref.defect_rate <= 1 or ref.images < 1:
            raise ValueError("model.json reference: score_bins must be one longer than "
                             "score_hist, defect_rate in [0, 1], images >= 1")
        return ref


@dataclass(frozen=True)
class DriftSettings:
    window: int = 200  # 0 = off
    psi_threshold: float = 0.25
    p_chart_sigmas: float = 3.0
    input_tolerance: float = 0.1
    expected_defect_rate: float = -1.0  # -1 = the reference's
    min_interval_s: float = 60.0


@dataclass(frozen=True)
class Finding:
    """One check on one window: `failed` says whether it is out of bounds."""

    kind: str
    failed: bool
    message: str
    details: Dict[str, Any] = field(default_factory=dict)


# ----- the math ----------------------------------------------------------------------------
def histogram(values: Sequence[float], edges: Sequence[float]) -> List[float]:
    """Share of `values` in each [edges[i], edges[i+1]) bin, with half an image added to every
    bin (additive smoothing), so an empty bin is a small share rather than zero."""
    counts = [0.5] * (len(edges) - 1)
    for v in values:
        for i in range(len(counts)):
            if edges[i] <= v < edges[i + 1]:
                counts[i] += 1
                break
    total = sum(counts)
    return [c / total for c in counts]


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index: sum over bins of (a - e) ln(a / e); both histograms come
    from `histogram`, so no share is zero."""
    return sum((a - e) * math.log(a / e) for e, a in zip(expected, actual))


def p_chart_limits(p0: float, n: int, sigmas: float) -> Tuple[float, float]:
    spread = sigmas * math.sqrt(p0 * (1 - p0) / n) if n > 0 else 0.0
    return max(0.0, p0 - spread), min(1.0, p0 + spread)


def judge(ref: Reference, settings: DriftSettings, verdicts: Sequence[str],
          top_scores: Sequence[float], stats: Sequence[ImageStats]) -> List[Finding]:
    """Every check on one window."""
    n = len(verdicts)
    found: List[Finding] = []
    p0 = ref.defect_rate if settings.expected_defect_rate < 0 else settings.expected_defect_rate
    rate = sum(v == VERDICT_DEFECT for v in verdicts) / n if n else 0.0
    low, high = p_chart_limits(p0, n, settings.p_chart_sigmas)
    found.append(Finding(
        "defect_rate", not low <= rate <= high,
        f"defect rate {rate:.3f} over the last {n} images, control limits "
        f"[{low:.3f}, {high:.3f}] around {p0:.3f}",
        {"window_images": n, "defect_rate": round(rate, 4), "expected": round(p0, 4),
         "lcl": round(low, 4), "ucl": round(high, 4)}))
    index = psi(ref.score_hist, histogram(top_scores, ref.score_bins))
    found.append(Finding(
        "score_shift", index > settings.psi_threshold,
        f"score distribution shift: PSI {index:.3f} (threshold {settings.psi_threshold:g})",
        {"window_images": n, "psi": round(index, 4), "threshold": settings.psi_threshold}))
    if stats:
        for kind in INPUTS:
            band = ref.inputs[kind]
            widen = settings.input_tolerance * (band.p95 - band.p05)
            lower, upper = band.p05 - widen, band.p95 + widen
            if kind == "sharpness":
                lower = band.p05 * max(0.0, 1.0 - settings.input_tolerance)
            values = [getattr(s, kind) for s in stats]
            if kind == "sharpness":
                value = statistics.median(values)
                failed, words = value < lower, "out of focus: median sharpness"
            else:
                value = statistics.fmean(values)
                failed = not lower <= value <= upper
                words = f"mean {kind}" + (" (camera too dark?)" if kind == "brightness"
                                          and value < lower else
                                          " (over-exposed?)" if kind == "brightness"
                                          and value > upper else "")
            found.append(Finding(
                kind, failed, f"{words} {value:.1f}, reference band "
                f"[{lower:.1f}, {upper:.1f}]" if kind != "sharpness" else
                f"{words} {value:.1f}, reference minimum {lower:.1f}",
                {"window_images": len(values), "value": round(value, 3),
                 "lower": round(lower, 3), "upper": round(upper, 3)}))
    return found


# ----- state -------------------------------------------------------------------------------
class DriftMonitor:
    """Collects a window, judges it, and says which alarms change state (RAISED / CLEARED)."""

    def __init__(self, reference: Reference, settings: DriftSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reference = reference
        self.settings = settings
        self._clock = clock
        self._verdicts: List[str] = []
        self._scores: List[float] = []
        self._stats: List[ImageStats] = []
        self.raised: Dict[str, bool] = {}
        self._last_sent: Dict[str, float] = {}

    def observe(self, verdict: str, top_score: float,
                stats: Optional[ImageStats]) -> List[Tuple[str, Finding]]:
        """Add one inspected image; at the end of a window, the (state, finding) changes."""
        self._verdicts.append(verdict)
        self._scores.append(top_score)
        if stats is not None:
            self._stats.append(stats)
        if len(self._verdicts) < self.settings.window:
            return []
        findings = judge(self.reference, self.settings, self._verdicts, self._scores, self._stats)
        self._verdicts, self._scores, self._stats = [], [], []
        changes = []
        now = self._clock()
        for finding in findings:
            active = self.raised.get(finding.kind, False)
            if finding.failed == active:
                continue
            last = self._last_sent.get(finding.kind)
            if last is not None and now - last < self.settings.min_interval_s:
                continue  # judged again at the next window
            self.raised[finding.kind] = finding.failed
            self._last_sent[finding.kind] = now
            changes.append((ALERT_RAISED if finding.failed else ALERT_CLEARED, finding))
        return changes


def reference_from(verdicts: Sequence[str], top_scores: Sequence[float],
                   stats: Sequence[ImageStats]) -> Dict[str, Any]:
    """model.json `reference` from what the detection path gave on the validation images."""
    def band(values: Sequence[float]) -> Dict[str, float]:
        ordered = sorted(values)
        return {"mean": round(statistics.fmean(values), 3),
                "std": round(statistics.pstdev(values), 3),
                **{f"p{q:02d}": round(quantile(ordered, q / 100), 3) for q in (5, 50, 95)}}

    return {
        "images": len(verdicts),
        "defect_rate": round(sum(v == VERDICT_DEFECT for v in verdicts) / len(verdicts), 4),
        "score_bins": list(SCORE_BINS),
        "score_hist": [round(v, 4) for v in histogram(top_scores, SCORE_BINS)],
        "input": {kind: band([getattr(s, kind) for s in stats]) for kind in INPUTS},
    }
