"""How many CPUs this process may really use: its affinity, capped by a cgroup CPU quota.

On a device the nucleus may run a component inside a cgroup with a CPU quota (a recipe's
`SystemResourceLimits.cpus`, or a container's `--cpus`), which `os.cpu_count()` does not show.
Sizing thread pools to more CPUs than the quota allows makes the kernel throttle the whole process
at the end of each period, which costs latency. The quota is rounded down (at least 1), as Go's
automaxprocs does: two busy threads on a 1.5-CPU quota are throttled, one is not.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (taskset, cpuset), or the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _v2_limit(folder: Path) -> Optional[float]:
    text = _read(folder / "cpu.max")  # "max 100000" or "<quota> <period>"
    if not text:
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_limit(folder: Path) -> Optional[float]:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        q, p = int(quota or "-1"), int(period or "0")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _ancestors(root: Path, relative: str) -> list:
    """The cgroup folder and each parent up to the mount root: a parent's quota binds too."""
    parts = [p for p in relative.split("/") if p]
    return [root.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def cgroup_cpu_limit(proc_cgroup: Path = PROC_CGROUP,
                     cgroup_root: Path = CGROUP_ROOT) -> Optional[float]:
    """The tightest CPU quota (in CPUs) over this process's cgroup and its parents; None if
    there is none or it cannot be read."""
    text = _read(proc_cgroup)
    if not text:
        return None
    limits = []
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, relative = fields
        if controllers == "":  # cgroup v2: "0::/path"
            limits += [_v2_limit(f) for f in _ancestors(cgroup_root, relative)]
        elif "cpu" in controllers.split(","):  # cgroup v1: "4:cpu,cpuacct:/path"
            mount = next((cgroup_root / name for name in (controllers, "cpu", "cpu,cpuacct")
                          if (cgroup_root / name).is_dir()), None)
            if mount is not None:
                limits += [_v1_limit(f) for f in _ancestors(mount, relative)]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def usable_cpus(proc_cgroup: Path = PROC_CGROUP, cgroup_root: Path = CGROUP_ROOT) -> int:
    """Affinity CPUs, capped by the cgroup quota rounded down; at least 1."""
    cpus = affinity_cpus()
    limit = cgroup_cpu_limit(proc_cgroup, cgroup_root)
    if limit is not None:
        cpus = min(cpus, max(1, math.floor(limit)))
    return cpus
