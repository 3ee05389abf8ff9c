"""The SQLite history: upserts, limits by rows and age, alarms, and what survives a reopen."""

from __future__ import annotations

import time
from pathlib import Path

from vqi_dashboard.history import Filters, History

from vqitools.dashrun import result


def history(tmp_path: Path, rows: int = 1000, hours: float = 24) -> History:
    return History(str(tmp_path / "h.sqlite3"), rows, hours)


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def test_rows_beyond_the_limit_are_pruned_oldest_first(tmp_path: Path) -> None:
    h = history(tmp_path, rows=100)
    now = time.time()
    h.write([result(f"r{i:03d}", "/x.jpg", time_iso=iso(now - 1000 + i)) for i in range(150)])
    assert h.prune(now) == 50
    total, rows = h.page(Filters(), 0, 1000)
    assert total == 100 and rows[-1]["image_id"] == "r050"


def test_rows_older_than_the_age_limit_are_pruned(tmp_path: Path) -> None:
    h = history(tmp_path, hours=1)
    now = time.time()
    h.write([result("old", "/x.jpg", time_iso=iso(now - 7200)),
             result("new", "/x.jpg", time_iso=iso(now - 60))])
    h.prune(now)
    assert [r["image_id"] for r in h.page(Filters(), 0, 10)[1]] == ["new"]


def test_pruning_runs_by_itself_as_rows_arrive(tmp_path: Path) -> None:
    h = history(tmp_path, rows=100)
    for start in range(0, 600, 50):
        h.write([result(f"r{i}", "/x.jpg") for i in range(start, start + 50)])
    assert h.count() <= 600 - 500 + 100


def test_the_history_is_there_after_reopening(tmp_path: Path) -> None:
    h = history(tmp_path)
    h.write([result("a", "/x.jpg")], feedback=[{"feedback_id": "f" * 32, "image_id": "a",
                                                "label": "confirm", "time": iso(time.time())}])
    h.close()
    again = history(tmp_path)
    assert again.result("a")["image_id"] == "a"
    assert again.page(Filters(), 0, 10)[1][0]["feedback"] == "confirm"


def test_filters_combine(tmp_path: Path) -> None:
    h = history(tmp_path)
    now = time.time()
    h.write([result("a", "/a.jpg", "OK", "cam-1", iso(now - 30)),
             result("b", "/b.jpg", "DEFECT", "cam-1", iso(now - 20), boxes=1),
             result("c", "/c.jpg", "DEFECT", "cam-2", iso(now - 10), boxes=1)])
    total, rows = h.page(Filters(verdict="DEFECT", camera="cam-1"), 0, 10)
    assert total == 1 and rows[0]["image_id"] == "b"
    assert h.page(Filters(since=now - 25, until=now - 5), 0, 10)[0] == 2
    assert h.cameras() == ["cam-1", "cam-2"]


def test_a_warning_stays_an_hour_and_a_raised_alarm_until_cleared(tmp_path: Path) -> None:
    h = history(tmp_path)
    now = time.time()
    base = {"component": "com.example.vqi.Inference", "message": "m"}
    h.write(alerts=[{**base, "kind": "acceptance", "state": "WARNING", "time": iso(now - 7200)},
                    {**base, "kind": "drift", "state": "RAISED", "time": iso(now - 7200)},
                    {**base, "kind": "sharpness", "state": "WARNING", "time": iso(now - 60)}])
    assert sorted(a["kind"] for a in h.active_alarms()) == ["drift", "sharpness"]
    h.write(alerts=[{**base, "kind": "drift", "state": "CLEARED", "time": iso(now)}])
    assert [a["kind"] for a in h.active_alarms()] == ["sharpness"]
