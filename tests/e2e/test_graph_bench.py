"""scripts/graph-bench runs end to end and reports every figure it promises (values not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_graph_bench_reports_throughput_latency_cpu_rss_idle_and_the_bound():
    done = subprocess.run([sys.executable, str(REPO / "scripts/graph-bench"), "--images", "20",
                           "--paced", "5", "--rate", "5", "--idle", "1", "--json"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout)
    print(figures)
    assert (figures["lost"], figures["archived_twice"], figures["failed"]) == (0, 0, 0)
    for process in ("ImageSource", "Inference", "Uploader", "Dashboard", "runtime"):
        assert figures["cpu_ms_per_image"][process] > 0
        assert figures["rss_mb"][process] > 0
        assert process in figures["idle_cpu_ms_per_s"]
    assert set(figures["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert figures["bound_images_per_s"] > 0 and figures["pipeline_images_per_s"] > 0
    assert figures["model_cpu_ms_per_image"] > 0
