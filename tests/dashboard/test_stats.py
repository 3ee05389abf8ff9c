"""Shifts, hourly counts and rates: the page's figures, as pure functions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from vqi_dashboard import stats

UTC = timezone.utc
CET = timezone(timedelta(hours=1))


def at(text: str, tz=UTC) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def test_the_current_shift_is_the_latest_start_before_now() -> None:
    shifts = stats.shifts(at("2026-12-02T15:30:00"), [6, 14, 22], tz=UTC)
    assert [s.name for s in shifts] == ["14:00 2026-12-02", "06:00 2026-12-02",
                                        "22:00 2026-12-01"]
    assert shifts[0].start == at("2026-12-02T14:00:00")
    assert shifts[0].end == at("2026-12-02T22:00:00")
    assert shifts[1].end == shifts[0].start and shifts[2].end == shifts[1].start


def test_a_night_shift_runs_across_midnight() -> None:
    (night,) = stats.shifts(at("2026-12-02T03:00:00"), [6, 14, 22], count=1, tz=UTC)
    assert night.name == "22:00 2026-12-01" and night.end == at("2026-12-02T06:00:00")


def test_shifts_are_in_the_devices_local_time() -> None:
    (shift,) = stats.shifts(at("2026-12-02T06:30:00", CET), [6, 18], count=1, tz=CET)
    assert shift.start == at("2026-12-02T06:00:00", CET)
    assert shift.end == at("2026-12-02T18:00:00", CET)


def test_one_shift_a_day_goes_back_whole_days() -> None:
    shifts = stats.shifts(at("2026-12-02T07:00:00"), [6], count=3, tz=UTC)
    assert [s.start for s in shifts] == [at(f"2026-12-0{d}T06:00:00") for d in (2, 1)] + [
        at("2026-11-30T06:00:00")]


def test_hourly_series_has_every_hour_with_zeros() -> None:
    now = at("2026-12-02T10:20:00")
    rows = [(int(at("2026-12-02T10:00:00")), "OK", 5), (int(at("2026-12-02T08:00:00")),
                                                        "DEFECT", 2),
            (int(at("2026-11-01T08:00:00")), "OK", 9)]
    series = stats.hourly_series(rows, now, hours=4)
    assert [s["hour"] for s in series] == [int(at(f"2026-12-02T{h:02d}:00:00"))
                                           for h in (7, 8, 9, 10)]
    assert [(s["OK"], s["DEFECT"]) for s in series] == [(0, 0), (0, 2), (0, 0), (5, 0)]


def test_rates_of_nothing_are_zero() -> None:
    assert stats.rates({}) == {"total": 0, "defect_rate": 0.0, "error_rate": 0.0}
    assert stats.rates({"OK": 3, "DEFECT": 1}) == {"total": 4, "defect_rate": 0.25,
                                                   "error_rate": 0.0}


def test_latency_percentiles_are_the_metrics_envelopes() -> None:
    from shared.metrics import percentiles

    values = [float(v) for v in range(1, 101)]
    assert stats.latency(values) == percentiles(values)
