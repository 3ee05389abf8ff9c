"""Run component lifecycles (Install, Startup/Run, Shutdown) the way the Greengrass nucleus does.

One driver thread per component: it waits until its dependencies are RUNNING or FINISHED, runs
Install (with its Timeout), then Startup or Run, each as `sh -c <script>` in the component's work
directory and in its own process group. A step that fails moves the component to ERRORED and is
retried after an exponential backoff; the third error within an hour makes it BROKEN, and its
HARD dependents then never start. Output goes, line by line and timestamped, to
`logs/<ComponentName>.log`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import IO


class State(str, Enum):
    NEW = "NEW"
    INSTALLED = "INSTALLED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    FINISHED = "FINISHED"
    ERRORED = "ERRORED"
    BROKEN = "BROKEN"


READY_STATES = frozenset({State.RUNNING, State.FINISHED})
DEFAULT_STARTUP_TIMEOUT = 120.0
DEFAULT_INSTALL_TIMEOUT = 120.0
DEFAULT_SHUTDOWN_TIMEOUT = 15.0


@dataclass(frozen=True)
class Step:
    """One lifecycle step, variables already interpolated."""

    script: str
    timeout: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    skip_if: str | None = None


@dataclass
class ComponentSpec:
    """What the supervisor needs to run one component."""

    name: str
    work_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    install: Step | None = None
    startup: Step | None = None
    run: Step | None = None
    shutdown: Step | None = None
    dependencies: dict[str, str] = field(default_factory=dict)  # name -> HARD | SOFT
    notes: list[str] = field(default_factory=list)  # what the local runtime does differently


@dataclass(frozen=True)
class RestartPolicy:
    max_errors: int = 3
    error_window_s: float = 3600.0
    backoff_initial_s: float = 1.0
    backoff_factor: float = 2.0
    backoff_max_s: float = 30.0
    stop_grace_s: float = 5.0

    def backoff(self, errors: int) -> float:
        return min(self.backoff_max_s, self.backoff_initial_s * self.backoff_factor ** (errors - 1))


@dataclass(frozen=True)
class ComponentStatus:
    state: State = State.NEW
    errors: int = 0
    pid: int | None = None
    message: str = ""
    since: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "errors": self.errors,
            "pid": self.pid,
            "message": self.message,
            "since": self.since,
        }


def utc_stamp() -> str:
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class ComponentLog:
    """Timestamped, line-oriented log file shared by a component's steps."""

    def __init__(self, path: Path, name: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._name = name
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8", buffering=1)

    def write(self, level: str, source: str, message: str) -> None:
        line = f"{utc_stamp()} [{level}] ({source}) {self._name}: {message}\n"
        with self._lock:
            if not self._file.closed:
                self._file.write(line)

    def pump(self, stream: IO[bytes], level: str, source: str) -> None:
        """Copy a child's pipe into the log until it closes."""
        with stream:
            for raw in iter(stream.readline, b""):
                self.write(level, source, raw.decode("utf-8", "replace").rstrip("\r\n"))

    def close(self) -> None:
        with self._lock:
            self._file.close()


def skip_step(skip_if: str | None, env: dict[str, str]) -> bool:
    """Greengrass `SkipIf`: `onpath <executable>` or `exists <file>`."""
    if not skip_if:
        return False
    kind, _, arg = skip_if.strip().partition(" ")
    arg = arg.strip()
    if kind == "onpath":
        return shutil.which(arg, path=env.get("PATH")) is not None
    if kind == "exists":
        return Path(arg).exists()
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, sig)


def _kill_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the process group, wait `grace_s` for the leader, then SIGKILL what is left."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _kill_leftovers(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL what a failed step left in its process group, so a retry never runs beside it."""
    _signal_group(proc.pid, signal.SIGKILL)


def marked_processes(key: str, value: str) -> list[int]:
    """Processes of this user whose environment holds KEY=VALUE (Linux /proc)."""
    wanted = f"{key}={value}".encode()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if wanted in handle.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def kill_marked(key: str, value: str) -> list[int]:
    """SIGKILL every process carrying KEY=VALUE: leftovers of a runtime that died, or daemons
    that left their process group. Returns the pids signalled."""
    pids = marked_processes(key, value)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return pids


class Supervisor:
    """Drives every component's lifecycle; thread-safe status; `stop()` ends all processes."""

    def __init__(
        self,
        specs: list[ComponentSpec],
        logs_dir: Path,
        policy: RestartPolicy | None = None,
        on_change: Callable[[str, ComponentStatus], None] | None = None,
        base_env: dict[str, str] | None = None,
    ) -> None:
        self._order = [s.name for s in specs]
        self._specs = {s.name: s for s in specs}
        self._logs_dir = logs_dir
        self._policy = policy or RestartPolicy()
        self._on_change = on_change
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._cond = threading.Condition()
        self._status = {name: ComponentStatus(since=utc_stamp()) for name in self._order}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._error_times: dict[str, list[float]] = {name: [] for name in self._order}
        self._threads: list[threading.Thread] = []
        self._logs: dict[str, ComponentLog] = {}
        self._stopping = False
        self._final: set[str] = set()
        self._blocked: set[str] = set()  # NEW forever: a HARD dependency will never be ready

    # ----- status -----
    @property
    def lock(self) -> threading.Condition:
        """Held while state changes are reported; take it before any lock of your own."""
        return self._cond

    def status(self, name: str) -> ComponentStatus:
        with self._cond:
            return self._status[name]

    def snapshot(self) -> dict[str, ComponentStatus]:
        with self._cond:
            return dict(self._status)

    def wait_until(self, predicate: Callable[[dict[str, ComponentStatus]], bool],
                   timeout: float) -> bool:
        """Block until `predicate(snapshot)` holds (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(dict(self._status)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def settled(self, statuses: dict[str, ComponentStatus]) -> bool:
        """Every component RUNNING, FINISHED, BROKEN or blocked behind a broken HARD dependency.

        A short Run passes through RUNNING, so this means "all started" rather than "all done".
        """
        return all(s.state in (State.RUNNING, State.FINISHED, State.BROKEN)
                   or name in self._blocked for name, s in statuses.items())

    def _set(self, name: str, state: State | None = None, **changes: object) -> None:
        with self._cond:
            if name in self._final:
                return  # stop() has the last word
            old = self._status[name]
            new = replace(old, **changes)
            if state is not None and state != old.state:
                new = replace(new, state=state, since=utc_stamp())
            self._status[name] = new
            self._cond.notify_all()
            # Reported under the lock so logs and status.json see changes in their real order.
            if state is not None and state != old.state:
                self._logs[name].write("INFO", "lifecycle", f"{old.state.value} -> {state.value}"
                                       + (f" ({new.message})" if new.message else ""))
            if self._on_change is not None and new != old:
                self._on_change(name, new)

    # ----- running -----
    def start(self) -> None:
        for name in self._order:
            self._logs[name] = ComponentLog(self._logs_dir / f"{name}.log", name)
            for note in self._specs[name].notes:
                self._logs[name].write("WARN", "localgg", note)
        for name in self._order:
            thread = threading.Thread(target=self._drive, args=(name,), name=f"lgg-{name}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def _stopped(self) -> bool:
        with self._cond:
            return self._stopping

    def _wait_dependencies(self, name: str) -> bool:
        deps = {d: t for d, t in self._specs[name].dependencies.items() if d in self._specs}

        def dead(dep: str) -> bool:  # will never become ready
            return self._status[dep].state == State.BROKEN or dep in self._blocked

        with self._cond:
            while not self._stopping:
                blocked = [d for d, t in deps.items() if t == "HARD" and dead(d)]
                if blocked:
                    break
                pending = [d for d in deps
                           if self._status[d].state not in READY_STATES and not dead(d)]
                if not pending:
                    return True
                self._cond.wait()
            else:
                return False
            self._blocked.add(name)
            reasons = [f"{d} is {'BROKEN' if self._status[d].state == State.BROKEN else 'blocked'}"
                       for d in blocked]
        self._set(name, message=f"not started: HARD dependency {', '.join(reasons)}")
        return False

    def _spawn(self, name: str, step_name: str, step: Step) -> subprocess.Popen[bytes] | None:
        spec = self._specs[name]
        env = {**self._base_env, **spec.env, **step.env}
        with self._cond:
            if self._stopping:
                return None
            proc = subprocess.Popen(
                ["sh", "-c", step.script],
                cwd=spec.work_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            self._procs[name] = proc
        log = self._logs[name]
        log.write("INFO", step_name, f"started pid {proc.pid}: {step.script}")
        pipes = ((proc.stdout, "INFO", "stdout"), (proc.stderr, "WARN", "stderr"))
        for stream, level, kind in pipes:
            threading.Thread(target=log.pump, args=(stream, level, f"{step_name}/{kind}"),
                             daemon=True).start()
        return proc

    def _run_step(self, name: str, step_name: str, step: Step,
                  default_timeout: float | None) -> tuple[bool, str]:
        """Run a step to completion; returns (succeeded, reason)."""
        spec = self._specs[name]
        if skip_step(step.skip_if, {**self._base_env, **spec.env, **step.env}):
            self._logs[name].write("INFO", step_name, f"skipped (SkipIf {step.skip_if})")
            return True, "skipped"
        try:
            proc = self._spawn(name, step_name, step)
        except OSError as exc:
            self._logs[name].write("ERROR", step_name, f"could not start: {exc}")
            return False, f"{step_name} could not start: {exc}"
        if proc is None:
            return False, "stopping"
        timeout = step.timeout if step.timeout is not None else default_timeout
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc, self._policy.stop_grace_s)
            self._logs[name].write("ERROR", step_name, f"timed out after {timeout:g}s")
            return False, f"{step_name} timed out after {timeout:g}s"
        self._logs[name].write("INFO" if code == 0 else "ERROR", step_name, f"exited with {code}")
        if code != 0:
            _kill_leftovers(proc)
        return code == 0, f"{step_name} exited with code {code}"

    def _record_error(self, name: str, reason: str) -> bool:
        """ERRORED, then back off; True when the component is now BROKEN."""
        now = time.monotonic()
        times = [t for t in self._error_times[name] if now - t < self._policy.error_window_s]
        times.append(now)
        self._error_times[name] = times
        errors = len(times)
        self._set(name, State.ERRORED, errors=errors, pid=None, message=reason)
        if errors >= self._policy.max_errors:
            self._set(name, State.BROKEN, message=f"{reason}; {errors} errors, giving up")
            return True
        delay = self._policy.backoff(errors)
        self._logs[name].write("INFO", "lifecycle", f"retrying in {delay:g}s")
        with self._cond:
            self._cond.wait_for(lambda: self._stopping, timeout=delay)
        return False

    def _restart_note(self, name: str) -> str:
        errors = self.status(name).errors
        return f"restart after {errors} error(s)" if errors else ""

    def _drive(self, name: str) -> None:
        try:
            self._drive_lifecycle(name)
        except Exception as exc:  # a runtime bug must not leave a component silently STARTING
            self._logs[name].write("ERROR", "lifecycle", f"runtime error: {exc!r}")
            self._set(name, State.BROKEN, pid=None, message=f"runtime error: {exc!r}")

    def _drive_lifecycle(self, name: str) -> None:
        spec = self._specs[name]
        if not self._wait_dependencies(name):
            return
        installed = False
        while not self._stopped():
            if not installed:
                if spec.install is not None:
                    ok, reason = self._run_step(name, "Install", spec.install,
                                                DEFAULT_INSTALL_TIMEOUT)
                    if self._stopped():
                        return
                    if not ok:
                        if self._record_error(name, reason):
                            return
                        continue
                installed = True
                self._set(name, State.INSTALLED, message="")
            restart_note = self._restart_note(name)
            if spec.startup is not None:
                self._set(name, State.STARTING, message=restart_note)
                ok, reason = self._run_step(name, "Startup", spec.startup,
                                            DEFAULT_STARTUP_TIMEOUT)
                if self._stopped():
                    return
                if not ok:
                    if self._record_error(name, reason):
                        return
                    continue
                self._set(name, State.RUNNING, message="")
                return
            if spec.run is None:
                self._set(name, State.FINISHED, message="installed; no Run step")
                return
            self._set(name, State.STARTING, message=restart_note)
            try:
                proc = self._spawn(name, "Run", spec.run)
            except OSError as exc:
                self._logs[name].write("ERROR", "Run", f"could not start: {exc}")
                if self._record_error(name, f"Run could not start: {exc}"):
                    return
                continue
            if proc is None:
                return
            self._set(name, State.RUNNING, pid=proc.pid, message="")
            try:
                code = proc.wait(timeout=spec.run.timeout)
                reason = f"Run exited with code {code}"
            except subprocess.TimeoutExpired:
                _kill_group(proc, self._policy.stop_grace_s)
                code, reason = -1, f"Run timed out after {spec.run.timeout:g}s"
            if self._stopped():
                return
            if code != 0:
                _kill_leftovers(proc)
            self._logs[name].write("INFO" if code == 0 else "ERROR", "Run", reason)
            if code == 0:
                self._set(name, State.FINISHED, pid=None, message="Run exited with code 0")
                return
            if self._record_error(name, reason):
                return

    # ----- stopping -----
    def stop(self, join_timeout: float = 30.0) -> None:
        """Stop dependents before their dependencies: Shutdown step, then SIGTERM/SIGKILL."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for name in reversed(self._order):
            self._stop_component(name)
        deadline = time.monotonic() + join_timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for log in self._logs.values():
            log.close()

    def _stop_component(self, name: str) -> None:
        spec = self._specs[name]
        with self._cond:
            proc = self._procs.get(name)
            state = self._status[name].state
        active = state in (State.RUNNING, State.STARTING, State.INSTALLED) or (
            proc is not None and proc.poll() is None)
        if not active:
            return
        self._set(name, State.STOPPING)
        if spec.shutdown is not None and state in (State.RUNNING, State.STARTING):
            self._run_shutdown(name, spec.shutdown)
        if proc is not None and proc.poll() is None:
            _kill_group(proc, self._policy.stop_grace_s)
        elif proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # leftovers of a Startup's background group
            except (ProcessLookupError, PermissionError):
                pass
        ran = state in (State.RUNNING, State.STARTING, State.INSTALLED)
        self._set(name, State.FINISHED if ran else state, pid=None,
                  message="stopped" if ran else f"stopped during {state.value}")
        with self._cond:
            self._final.add(name)

    def _run_shutdown(self, name: str, step: Step) -> None:
        spec = self._specs[name]
        env = {**self._base_env, **spec.env, **step.env}
        proc = subprocess.Popen(["sh", "-c", step.script], cwd=spec.work_dir, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=step.timeout or DEFAULT_SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_group(proc, 1.0)
            out = b""
        for line in out.decode("utf-8", "replace").splitlines():
            self._logs[name].write("INFO", "Shutdown", line)
