"""Thread pools are sized to the CPUs the process may use: affinity capped by a cgroup quota.

Each test lays out a /proc/self/cgroup file and a cgroup mount in a temporary folder, as the
kernel shows them, and reads them with the component's own code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vqi_inference import cpus, settings

HERE = Path(__file__).resolve().parent
INFERENCE = HERE.parent.parent / "components" / "inference"


def layout(tmp_path: Path, proc: str, files: dict) -> tuple:
    (tmp_path / "cgroup").write_text(proc)
    root = tmp_path / "fs"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    return tmp_path / "cgroup", root


def test_cgroup_v2_quota_is_read_from_the_process_cgroup(tmp_path: Path) -> None:
    proc, root = layout(tmp_path, "0::/system.slice/gg.service\n",
                        {"system.slice/gg.service/cpu.max": "150000 100000\n"})
    assert cpus.cgroup_cpu_limit(proc, root) == 1.5


def test_a_parent_cgroup_quota_binds_the_child(tmp_path: Path) -> None:
    proc, root = layout(tmp_path, "0::/system.slice/gg.service\n", {
        "system.slice/cpu.max": "100000 100000\n",
        "system.slice/gg.service/cpu.max": "max 100000\n",
    })
    assert cpus.cgroup_cpu_limit(proc, root) == 1.0


def test_no_quota_means_no_limit(tmp_path: Path) -> None:
    proc, root = layout(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    assert cpus.cgroup_cpu_limit(proc, root) is None
    assert cpus.cgroup_cpu_limit(tmp_path / "missing", root) is None


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    proc, root = layout(tmp_path, "4:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n", {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert cpus.cgroup_cpu_limit(proc, root) == 2.5


def test_quota_is_rounded_down_but_never_below_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 16)
    for quota, expected in (("250000 100000", 2), ("50000 100000", 1), ("max 100000", 16)):
        proc, root = layout(tmp_path, "0::/\n", {"cpu.max": quota})
        assert cpus.usable_cpus(proc, root) == expected


def test_unreadable_or_malformed_files_are_ignored(tmp_path: Path) -> None:
    proc, root = layout(tmp_path, "0::/a\ngarbage\n", {"a/cpu.max": "lots of cpus\n"})
    assert cpus.cgroup_cpu_limit(proc, root) is None


def test_decode_threads_auto_is_one_per_four_cpus() -> None:
    auto = settings.parse({})
    assert [settings.decode_threads(auto, cpus=n) for n in (1, 2, 4, 8, 16)] == [1, 1, 1, 2, 4]
    assert settings.decode_threads(settings.parse({"DecodeThreads": 3}), cpus=2) == 3


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin to one")
def test_a_process_pinned_to_one_cpu_sizes_for_one() -> None:
    code = ("from vqi_inference import settings as s; c = s.parse({}); "
            "print(s.thread_layout(c), s.decode_threads(c))")
    cpu = sorted(os.sched_getaffinity(0))[0]
    out = subprocess.run(["taskset", "-c", str(cpu), sys.executable, "-c", code],
                         cwd=INFERENCE, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": f"{INFERENCE}:{INFERENCE.parent.parent}"})
    assert out.stdout.split() == ["(1,", "1)", "1"]
