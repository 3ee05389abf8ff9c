"""Counters and latencies for the periodic message on the metrics topic.

Same envelope as the other components (schema_version, component, time, window_s, totals,
uptime_s); counts are for the window since the previous message.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any, Deque, Dict, List

from shared.messages import SCHEMA_VERSION, utc_now


def percentiles(values: List[float]) -> Dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99)}


class Metrics:
    """Used from the service thread only."""

    def __init__(self, component: str, max_samples: int = 10000) -> None:
        self.component = component
        self.totals: Counter = Counter()
        self.started = time.monotonic()
        self._max = max_samples
        self._reset(self.started)

    def _reset(self, now: float) -> None:
        self._window_start = now
        self._counts: Counter = Counter()
        self._wait_ms: Deque[float] = deque(maxlen=self._max)
        self._result_ms: Deque[float] = deque(maxlen=self._max)

    def count(self, name: str, n: int = 1) -> None:
        self._counts[name] += n
        self.totals[name] += n

    def waited(self, ms: float) -> None:
        """From first seeing a file in the inbox to publishing its event."""
        self._wait_ms.append(ms)

    def resulted(self, ms: float) -> None:
        """From claiming an image to its completion message."""
        self._result_ms.append(ms)

    def snapshot(self, gauges: Dict[str, Any]) -> Dict[str, Any]:
        now = time.monotonic()
        window = max(now - self._window_start, 1e-9)
        message = {
            "schema_version": SCHEMA_VERSION,
            "component": self.component,
            "time": utc_now(),
            "window_s": round(window, 3),
            "images_published": self._counts["published"],
            "images_per_s": round(self._counts["published"] / window, 3),
            "counts": dict(self._counts),
            "inbox_to_event_ms": percentiles(list(self._wait_ms)),
            "claim_to_result_ms": percentiles(list(self._result_ms)),
            "totals": dict(self.totals),
            "uptime_s": round(now - self.started, 1),
        }
        message.update(gauges)
        self._reset(now)
        return message
