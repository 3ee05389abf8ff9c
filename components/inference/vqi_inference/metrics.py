"""What one result adds to the metrics window, and the fields Inference derives from a window.

The envelope and the percentile definition are shared (shared/metrics.py); counts are `images`,
`ok`, `defects`, `errors`, `error:<code>` per error code, `duplicates`, `bad_events`,
`publish_failures` and `iot_core_refused`.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from shared.messages import VERDICT_DEFECT, VERDICT_ERROR, VERDICT_OK
from shared.metrics import Window, rate

SERIES = ("latency", "inference")
VERDICT_COUNTS = {VERDICT_OK: "ok", VERDICT_DEFECT: "defects", VERDICT_ERROR: "errors"}


def record(window: Window, verdict: str, timings: Mapping[str, float],
           error: Optional[str]) -> None:
    window.count("images")
    window.count(VERDICT_COUNTS.get(verdict, verdict.lower()))
    if error:
        window.count("error:" + error.split(":", 1)[0])
    if "total" in timings:
        window.sample("latency", timings["total"])
    if "inference" in timings:
        window.sample("inference", timings["inference"])


def snapshot(window: Window, queue_depth: int) -> Dict[str, Any]:
    def fields(counts: Mapping[str, int], window_s: float) -> Dict[str, Any]:
        inspected = counts.get("images", 0) - counts.get("errors", 0)
        defects = counts.get("defects", 0)
        return {"images_per_s": rate(counts.get("images", 0), window_s),
                "defect_rate": round(defects / inspected, 4) if inspected > 0 else 0.0,
                "queue_depth": queue_depth}

    return window.snapshot(fields, SERIES)
