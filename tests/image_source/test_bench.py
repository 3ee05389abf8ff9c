"""scripts/image-source-bench runs end to end and reports latency and throughput."""

from __future__ import annotations

import json
import subprocess

import pytest

from .helpers import ROOT


@pytest.mark.timeout(120)
def test_bench_prints_latency_percentiles_and_events_per_second() -> None:
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "scripts" / "image-source-bench"),
         "--count", "30", "--paced", "10", "--rate", "20", "--size", "5000", "--json"],
        capture_output=True, text=True, timeout=100, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    for phase in ("paced", "burst"):
        r = report[phase]
        assert r["images"] == {"paced": 10, "burst": 30}[phase]
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert r["events_per_s"] > 0 and r["component_cpu_ms_per_image"] >= 0
