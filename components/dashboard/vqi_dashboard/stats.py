"""Pure functions for the page's figures: shifts, hourly counts, rates, latency percentiles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from shared.metrics import percentiles

VERDICTS = ("OK", "DEFECT", "ERROR")


@dataclass(frozen=True)
class Shift:
    name: str
    start: float
    end: float


def shifts(now: float, start_hours: Sequence[int], count: int = 3,
           tz: Optional[tzinfo] = None) -> List[Shift]:
    """The current shift and the `count - 1` before it, newest first, in the device's local
    time (`tz` for tests). A shift runs from one start hour to the next; names are the start
    hour and the date it began on, e.g. "06:00 2026-12-02"."""
    hours = sorted(start_hours)
    # Naive local time when no tz: .timestamp() then applies the offset in force at each start,
    # so a shift that begins after a daylight-saving change still starts at its wall-clock hour.
    local = datetime.fromtimestamp(now, tz)
    starts: List[datetime] = []
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    for back in range(0, count // len(hours) + 2):
        base = day - timedelta(days=back)
        for h in reversed(hours):
            start = _at_hour(base, h)
            if start.timestamp() <= now:
                starts.append(start)
    starts.sort(key=lambda d: d.timestamp(), reverse=True)
    out: List[Shift] = []
    end = None
    for start in starts[:count]:
        finish = end if end is not None else _next_start(start, hours)
        out.append(Shift(f"{start:%H:%M %Y-%m-%d}", start.timestamp(), finish.timestamp()))
        end = start
    return out


def _at_hour(day: datetime, hour: int) -> datetime:
    return day.replace(hour=hour)


def _next_start(start: datetime, hours: Sequence[int]) -> datetime:
    later = [h for h in hours if h > start.hour]
    if later:
        return _at_hour(start, later[0])
    return _at_hour(start + timedelta(days=1), hours[0])


def hourly_series(rows: Iterable[Tuple[int, str, int]], now: float, hours: int = 24
                  ) -> List[Dict[str, object]]:
    """One entry per hour for the last `hours` (oldest first), zeros where nothing arrived."""
    first = (int(now) // 3600 - hours + 1) * 3600
    series = {first + i * 3600: {v: 0 for v in VERDICTS} for i in range(hours)}
    for hour, verdict, n in rows:
        if hour in series:
            series[hour][verdict if verdict in VERDICTS else "ERROR"] += n
    return [{"hour": h, **counts} for h, counts in sorted(series.items())]


def rates(counts: Dict[str, int]) -> Dict[str, float]:
    """Total, defect rate and error rate of a verdict count (rates 0 when empty)."""
    total = sum(counts.values())
    return {"total": total,
            "defect_rate": round(counts.get("DEFECT", 0) / total, 4) if total else 0.0,
            "error_rate": round(counts.get("ERROR", 0) / total, 4) if total else 0.0}


def latency(values: Iterable[float]) -> Dict[str, float]:
    """The metrics envelope's percentiles (shared.metrics), so the page and the metrics
    topic agree on what p95 means."""
    return percentiles(values)
