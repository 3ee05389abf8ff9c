"""scripts/ipc-bench runs end to end and reports what it measured."""

from __future__ import annotations

import json
import subprocess

import pytest

from .ipc_fixtures import CLIENT_PYTHON, REPO


@pytest.mark.timeout(120)
def test_ipc_bench_delivers_every_message_and_reports_rates_and_latencies():
    result = subprocess.run(
        [CLIENT_PYTHON, str(REPO / "scripts" / "ipc-bench"), "--messages", "300",
         "--latency-messages", "100", "--rate", "500", "--json"],
        capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for phase in ("throughput", "latency"):
        figures = report[phase]
        assert figures["received"] == figures["messages"]
        assert figures["msgs_per_s"] > 0
        assert 0 < figures["latency_median_ms"] <= figures["latency_p99_ms"]
        assert figures["cpu_us_per_message"]["server"] > 0
