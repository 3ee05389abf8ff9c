"""shared.metrics: one envelope and one percentile definition for every component."""

from __future__ import annotations

import random

import numpy as np
import pytest

from shared.metrics import Window, percentiles


@pytest.mark.parametrize("n", [1, 2, 3, 10, 99, 1000])
def test_percentiles_match_numpys_linear_definition(n: int) -> None:
    values = [random.Random(n).uniform(0, 500) for _ in range(n)]
    got = percentiles(values)
    for q in (50, 95, 99):
        assert got[f"p{q}"] == pytest.approx(float(np.percentile(values, q)), abs=0.006)
    assert got["max"] == pytest.approx(max(values), abs=0.006)


def test_percentiles_of_a_small_window_are_not_its_maximum() -> None:
    # Hand computed: ranks 0..3, p50 at 1.5 -> 25, p95 at 2.85 -> 38.5, p99 at 2.97 -> 39.7.
    assert percentiles([40, 10, 30, 20]) == {"p50": 25.0, "p95": 38.5, "p99": 39.7, "max": 40.0}


def test_percentiles_of_nothing_are_zeros() -> None:
    assert percentiles([]) == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_window_counts_since_the_last_snapshot_and_totals_since_start(
        assert_valid_metrics) -> None:
    clock = Clock()
    window = Window("com.example.vqi.Inference", "line-7", clock=clock)
    window.count("images", 3)
    window.sample("latency", 12.0)
    clock.now += 2.0
    first = window.snapshot(lambda counts, window_s: {"seen": counts["images"] / window_s},
                            ("latency", "inference"))
    window.count("images")
    clock.now += 4.0
    second = window.snapshot(lambda counts, window_s: {}, ("latency",))
    assert first["counts"] == {"images": 3} and first["window_s"] == 2.0 and first["seen"] == 1.5
    assert first["latency_ms"]["p50"] == 12.0 and first["inference_ms"]["max"] == 0.0
    assert second["counts"] == {"images": 1} and second["totals"] == {"images": 4}
    assert second["window_s"] == 4.0 and second["uptime_s"] == 6.0
    assert second["latency_ms"]["max"] == 0.0  # samples belong to their window
    assert first["thing_name"] == "line-7"


def test_a_window_keeps_at_most_max_samples() -> None:
    window = Window("c", max_samples=10)
    for ms in range(100):
        window.sample("x", float(ms))
    assert window.snapshot(lambda c, w: {})["x_ms"] == percentiles(range(90, 100))
