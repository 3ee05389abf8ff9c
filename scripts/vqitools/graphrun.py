"""The whole graph under the local runtime, as a separate process, for benchmarks and crash tests.

`Graph` starts `python -m localgg run` over a root whose camera folders are prepared as an operator
would (owned by the component user), reads component states and pids from `status.json`, and can
be stopped, or killed like a power-cycled device. The helpers read what the graph produced (the
archived images) and what its processes cost (CPU and RSS from /proc).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from localgg.users import ensure_run_as, is_root
from vqitools import venvcache
from vqitools.build import REPO_ROOT
from vqitools.demo import demo_overrides, original_name, prepare_folders

INFERENCE = "com.example.vqi.Inference"
DASHBOARD = "com.example.vqi.Dashboard"
SERVICES = ("com.example.vqi.ImageSource", INFERENCE, "com.example.vqi.Uploader", DASHBOARD)
SCRIPTS = REPO_ROOT / "scripts"
LOCAL_SITE = SCRIPTS / "sites" / "local.yaml"


class Graph:
    """One `python -m localgg run` over a root, with the folders an operator prepares."""

    def __init__(self, root: Path, merges: Optional[Dict[str, Dict[str, Any]]] = None,
                 site: Path = LOCAL_SITE, components_dir: Path = REPO_ROOT / "components") -> None:
        self.root = root
        self.components_dir = components_dir
        self.proc: Optional[subprocess.Popen[bytes]] = None
        prepare_root(root)
        updates = demo_overrides(root, site)
        # any free port: graphs run beside a demo (8090) and each other
        updates.setdefault(DASHBOARD, {}).setdefault("merge", {})["Port"] = 0
        for name, merge in (merges or {}).items():
            updates.setdefault(name, {}).setdefault("merge", {}).update(merge)
        self.overrides = root.parent / f"{root.name}-overrides.json"
        self.overrides.write_text(json.dumps(updates), encoding="utf-8")
        self.extra_env = venvcache.runtime_env(updates)

    def start(self) -> float:
        env = dict(os.environ, PYTHONPATH=f"{SCRIPTS}:{REPO_ROOT}")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localgg", "run", "--root", str(self.root),
             "--components-dir", str(self.components_dir), "--config-overrides",
             str(self.overrides), "--stream-manager-port", "0",
             *(f"--env={name}={value}" for name, value in self.extra_env.items())],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.monotonic()

    def status(self) -> Dict[str, Any]:
        try:
            return json.loads((self.root / "status.json").read_text())["components"]
        except (OSError, ValueError, KeyError):
            return {}

    def state(self, name: str) -> tuple:
        entry = self.status().get(name) or {}
        return entry.get("state"), entry.get("pid")

    def ready(self, restarted: str = INFERENCE, old_pid: Optional[int] = None) -> bool:
        """Every service RUNNING (reported ready), `restarted` in a new process if `old_pid`."""
        states = {n: self.state(n) for n in SERVICES}
        return all(s == "RUNNING" for s, _ in states.values()) and (
            old_pid is None or states[restarted][1] not in (None, old_pid))

    def pids(self) -> Dict[str, int]:
        """Each service's process, and the runtime's own (IPC server, Stream Manager)."""
        found = {n: self.state(n)[1] for n in SERVICES}
        if self.proc is not None:
            found["runtime"] = self.proc.pid
        return {n: p for n, p in found.items() if p}

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


def prepare_root(root: Path) -> None:
    """The root and the demo's camera folders, owned by the default component user (the
    runtime runs in another process here, so its `prepare` hook cannot be used)."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    prepare_folders(root, ensure_run_as("ggc_user:ggc_group") if is_root() else None)


def wait(condition: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> float:
    """Poll until `condition()`; the monotonic time it held. Exits with a message on timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)
    return time.monotonic()


def archived(root: Path) -> List[str]:
    """Camera names of the images ImageSource has moved to done/."""
    done = root / "images" / "done"
    return [original_name(p.name) for p in done.rglob("*") if p.is_file()] if done.is_dir() else []


def archived_count(root: Path) -> int:
    """How many files ImageSource has moved to done/ (cheap enough to poll under a burst)."""
    def count(folder: str) -> int:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return 0
        return sum(count(e.path) if e.is_dir(follow_symlinks=False) else 1 for e in entries)

    return count(str(root / "images" / "done"))


def last_archived_at(root: Path) -> float:
    """Wall-clock time of the newest move into done/ (a rename sets the file's ctime)."""
    done = root / "images" / "done"
    return max((p.stat().st_ctime for p in done.rglob("*") if p.is_file()), default=0.0)


def leftovers(root: Path) -> Dict[str, int]:
    def count(folder: str) -> int:
        path = root / "images" / folder
        return sum(p.is_file() and not p.name.endswith(".json") for p in path.rglob("*")) \
            if path.is_dir() else 0

    return {"failed": count("failed"), "quarantined": count("quarantine")}


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a running process; 0 once it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0
