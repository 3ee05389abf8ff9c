"""Rolling service metrics, published periodically on the metrics topic."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any, Deque, Dict, List, Optional

import numpy as np

from shared.messages import SCHEMA_VERSION, VERDICT_DEFECT, VERDICT_ERROR, utc_now


def percentiles(values: List[float]) -> Dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    p = np.percentile(np.asarray(values, dtype=np.float64), [50, 95, 99])
    return {"p50": round(float(p[0]), 2), "p95": round(float(p[1]), 2),
            "p99": round(float(p[2]), 2)}


class Metrics:
    """Counters for the current window plus totals since start; thread safe."""

    def __init__(self, component: str, max_samples: int = 10000) -> None:
        self.component = component
        self._lock = threading.Lock()
        self._max = max_samples
        self._reset_window(time.monotonic())
        self.totals: Counter = Counter()
        self.started = time.monotonic()

    def _reset_window(self, now: float) -> None:
        self._window_start = now
        self._latency: Deque[float] = deque(maxlen=self._max)
        self._inference: Deque[float] = deque(maxlen=self._max)
        self._counts: Counter = Counter()
        self._errors: Counter = Counter()

    def record(self, verdict: str, timings: Dict[str, float], error: Optional[str]) -> None:
        with self._lock:
            self._counts["images"] += 1
            self._counts[verdict] += 1
            self.totals["images"] += 1
            self.totals[verdict] += 1
            if "total" in timings:
                self._latency.append(timings["total"])
            if "inference" in timings:
                self._inference.append(timings["inference"])
            if error:
                self._errors[error.split(":", 1)[0]] += 1

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1
            self.totals[name] += 1

    def snapshot(self, queue_depth: int = 0, reset: bool = True) -> Dict[str, Any]:
        """The metrics message for the window since the previous snapshot."""
        now = time.monotonic()
        with self._lock:
            window = max(now - self._window_start, 1e-9)
            images = self._counts["images"]
            inspected = images - self._counts[VERDICT_ERROR]
            message = {
                "schema_version": SCHEMA_VERSION,
                "component": self.component,
                "time": utc_now(),
                "window_s": round(window, 3),
                "images": images,
                "images_per_s": round(images / window, 3),
                "defects": self._counts[VERDICT_DEFECT],
                "defect_rate": round(self._counts[VERDICT_DEFECT] / inspected, 4) if inspected
                else 0.0,
                "errors": self._counts[VERDICT_ERROR],
                "error_codes": dict(self._errors),
                "duplicates": self._counts["duplicates"],
                "bad_events": self._counts["bad_events"],
                "publish_failures": self._counts["publish_failures"],
                "iot_core_refused": self._counts["iot_core_refused"],
                "latency_ms": percentiles(list(self._latency)),
                "inference_ms": percentiles(list(self._inference)),
                "queue_depth": queue_depth,
                "totals": dict(self.totals),
                "uptime_s": round(now - self.started, 1),
            }
            if reset:
                self._reset_window(now)
        return message
