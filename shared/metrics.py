"""The one metrics envelope of every component, and the one definition of a percentile.

Each component publishes, every MetricsIntervalSeconds on its metrics topic, a message with
`schema_version`, `component`, `thing_name`, `time`, `window_s` (since the previous message),
`uptime_s`, `counts` (events in the window), `totals` (events since start), latency series as
`<name>_ms` percentile objects, and its own gauges. `shared/schemas/metrics.schema.json` is the
contract; a dashboard or a cloud rule can read any component's message the same way.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from typing import Any, Callable, Deque, Dict, Iterable, Mapping, Sequence

from shared.messages import SCHEMA_VERSION, utc_now

QUANTILES = (50, 95, 99)
MAX_SAMPLES = 10000


def quantile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, linear between the closest ranks (numpy's
    default); 0.0 for no values."""
    if not ordered:
        return 0.0
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentiles(values: Iterable[float]) -> Dict[str, float]:
    """p50/p95/p99 and max (`quantile`), so a small window does not report its maximum as p95;
    all 0.0 for no values."""
    ordered = sorted(float(v) for v in values)
    out = {f"p{q}": round(quantile(ordered, q / 100), 2) for q in QUANTILES}
    out["max"] = round(ordered[-1], 2) if ordered else 0.0
    return out


class Window:
    """Counts and latency samples of the current window plus totals since start; thread safe."""

    def __init__(self, component: str, thing_name: str = "", max_samples: int = MAX_SAMPLES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.component = component
        self.thing_name = thing_name
        self._clock = clock
        self._max = max_samples
        self._lock = threading.Lock()
        self.started = clock()
        self.totals: Counter = Counter()
        self._reset(self.started)

    def _reset(self, now: float) -> None:
        self._start = now
        self.counts: Counter = Counter()
        self._series: Dict[str, Deque[float]] = {}

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n
            self.totals[name] += n

    def sample(self, series: str, ms: float) -> None:
        """One latency sample of `series`, published as `<series>_ms`."""
        with self._lock:
            samples = self._series.get(series)
            if samples is None:
                samples = self._series[series] = deque(maxlen=self._max)
            samples.append(ms)

    def snapshot(self, fields: Callable[[Mapping[str, int], float], Dict[str, Any]],
                 series: Iterable[str] = (), reset: bool = True) -> Dict[str, Any]:
        """The message for the window: the envelope, each of `series` (always present, zeros
        when empty) and what `fields(counts, window_s)` derives for this component."""
        with self._lock:
            now = self._clock()
            window = max(now - self._start, 1e-9)
            counts = dict(self.counts)
            message: Dict[str, Any] = {
                "schema_version": SCHEMA_VERSION,
                "component": self.component,
                "thing_name": self.thing_name,
                "time": utc_now(),
                "window_s": round(window, 3),
                "uptime_s": round(now - self.started, 1),
                "counts": counts,
                "totals": dict(self.totals),
            }
            for name in (*series, *self._series):
                message[f"{name}_ms"] = percentiles(self._series.get(name, ()))
            if reset:
                self._reset(now)
        message.update(fields(counts, window))
        return message


def rate(count: int, window_s: float) -> float:
    return round(count / window_s, 3) if window_s > 0 else 0.0
