"""Run component lifecycles (Install, Startup/Run, Shutdown) the way the Greengrass nucleus does.

One driver thread per component (lifecyclemanager/Lifecycle.java, GenericExternalService.java):
Install runs first (NEW -> INSTALLED), then the driver waits until its dependencies are RUNNING or
FINISHED, then runs Startup or Run, each as `sh -c <script>` in the component's work directory,
in its own process group and as the component's user. With Run the component is RUNNING as soon
as the process starts; with Startup it stays STARTING until the process exits 0 or the component
reports RUNNING over IPC, within the step's Timeout. A component's own UpdateState may move it
STARTING -> RUNNING, to ERRORED (it is restarted) or to FINISHED; anything else is ignored, as the
nucleus ignores an "invalid reported state". A failed step makes the component ERRORED and it is
restarted at once (`RestartPolicy.backoff_initial_s`, 0 like the nucleus); errors are counted
per state (NEW for Install, STARTING, RUNNING), a state's count is cleared when the component
leaves that state normally, and the third error of one state within an hour makes it BROKEN.
Output goes, line by line and timestamped, to `logs/<ComponentName>.log`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
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


# sudo's default secure_path: the nucleus runs each step through `sudo -E -H -u USER -g GROUP`,
# which keeps the environment but replaces PATH with it (UnixPlatform.SudoDecorator).
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Lifecycle.STATES_TO_ERRORED: the states whose errors count towards BROKEN.
COUNTED_STATES = frozenset({State.NEW, State.STARTING, State.RUNNING})


@dataclass(frozen=True)
class RunAs:
    """The POSIX user and group a component's processes run as (the nucleus's runWith)."""

    user: str
    group: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def env(self) -> dict[str, str]:
        """What `sudo -E -H -u USER` changes in the environment it passes on."""
        return {"HOME": self.home, "USER": self.user, "LOGNAME": self.user, "PATH": SECURE_PATH}


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
    run_as: RunAs | None = None  # None: the runtime's own user


@dataclass(frozen=True)
class RestartPolicy:
    max_errors: int = 3
    error_window_s: float = 3600.0
    backoff_initial_s: float = 0.0
    backoff_factor: float = 2.0
    backoff_max_s: float = 30.0
    stop_grace_s: float = 5.0

    def backoff(self, errors: int) -> float:
        """Delay before restart number `errors`; 0 by default: the nucleus restarts at once."""
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


class SkipIfError(ValueError):
    """A SkipIf the nucleus refuses ("Invalid format for skipif" / "Unknown operator")."""


_SKIP_IF = re.compile(r"(exists|onpath) +(.+)")


def skip_step(skip_if: str | None, env: dict[str, str]) -> bool:
    """Greengrass `SkipIf` (GenericExternalService.shouldSkip): `[!]onpath <executable>` or
    `[!]exists <file>`; any other text is an error of the step, as on the nucleus."""
    if not skip_if:
        return False
    expr = skip_if.strip()
    negate = expr.startswith("!")
    if negate:
        expr = expr[1:].strip()
    match = _SKIP_IF.fullmatch(expr)
    if match is None:
        raise SkipIfError(f"invalid SkipIf {skip_if!r}: expected [!](exists|onpath) <argument>")
    kind, arg = match.group(1), match.group(2)
    if kind == "onpath":
        found = shutil.which(arg, path=env.get("PATH")) is not None
    else:
        found = Path(os.path.expanduser(arg)).exists()
    return found != negate


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
        # Lifecycle.stateToErroredCount: error times per state the error happened in.
        self._error_times: dict[str, dict[State, list[float]]] = {n: {} for n in self._order}
        self._reported: dict[str, State | None] = {name: None for name in self._order}
        self._threads: dict[str, threading.Thread] = {}
        self._halted: set[str] = set()  # being replaced by a deployment: its driver must end
        self._logs: dict[str, ComponentLog] = {}
        self._stopping = False
        self._final: set[str] = set()
        self._blocked: set[str] = set()  # INSTALLED forever: a HARD dependency is never ready

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

    def blocked(self) -> set[str]:
        """Components left INSTALLED because a HARD dependency will never be ready."""
        with self._cond:
            return set(self._blocked)

    def settled(self, statuses: dict[str, ComponentStatus]) -> bool:
        """Every component RUNNING, FINISHED, BROKEN or INSTALLED behind a broken HARD dependency.

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
                if state not in (State.ERRORED, State.BROKEN):
                    # Leaving a state normally clears its error count (internalReportState);
                    # INSTALLED after a failed Install is the nucleus's NEW -> INSTALLED.
                    self._error_times[name].pop(State.NEW if state == State.INSTALLED
                                                else old.state, None)
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
            self._start_driver(name, installed=False)

    def _start_driver(self, name: str, installed: bool) -> None:
        thread = threading.Thread(target=self._drive, args=(name, installed), name=f"lgg-{name}",
                                  daemon=True)
        self._threads[name] = thread
        thread.start()

    def replace(self, spec: ComponentSpec, reinstall: bool, join_timeout: float = 60.0) -> None:
        """A deployment changed this component: stop it (Shutdown, then its process group) and
        run it again from `spec`, from Install when `reinstall` (a new version or Install step),
        else from Startup/Run (a changed lifecycle or setEnv), as GenericExternalService's
        configuration listener requests a reinstall or a restart. Error counts are kept, as
        the nucleus keeps them on the same service (Lifecycle.stateToErroredCount), except
        that reinstalling a BROKEN one clears them (Lifecycle.handleCurrentStateBroken)."""
        name = spec.name
        with self._cond:
            if self._stopping:
                return
            self._halted.add(name)
            self._cond.notify_all()
        was_broken = self.status(name).state == State.BROKEN
        self._stop_component(name, final=False)
        thread = self._threads.get(name)
        if thread is not None:
            thread.join(join_timeout)
        with self._cond:
            self._specs[name] = spec
            self._halted.discard(name)
            self._blocked.discard(name)
            self._reported[name] = None
            if was_broken and reinstall:
                self._error_times[name].clear()
        self._set(name, State.NEW if reinstall else State.INSTALLED, pid=None,
                  errors=0 if was_broken and reinstall else self.status(name).errors,
                  message="deployment: " + ("reinstalling" if reinstall else "restarting"))
        self._start_driver(name, installed=not reinstall)

    def report_state(self, name: str, reported: str) -> bool:
        """A component's own UpdateState, as Lifecycle.reportState takes it: STARTING -> RUNNING,
        ERRORED or FINISHED, and RUNNING -> ERRORED or FINISHED; anything else is ignored.
        Returns whether it was accepted."""
        try:
            wanted = State(reported)
        except ValueError:
            wanted = None
        with self._cond:
            if name not in self._status:
                return False
            current = self._status[name].state
            allowed = {State.STARTING: {State.RUNNING, State.ERRORED, State.FINISHED},
                       State.RUNNING: {State.ERRORED, State.FINISHED}}.get(current, set())
            accepted = wanted in allowed and name not in self._final
            if accepted:
                self._reported[name] = wanted
                self._cond.notify_all()
        self._logs[name].write("INFO" if accepted else "WARN", "ipc",
                               f"UpdateState {reported} while {current.value}: "
                               + ("accepted" if accepted else "ignored (invalid reported state)"))
        return accepted

    def _stopped(self, name: str) -> bool:
        with self._cond:
            return self._stopping or name in self._halted

    def _wait_dependencies(self, name: str) -> bool:
        deps = {d: t for d, t in self._specs[name].dependencies.items() if d in self._specs}

        def dead(dep: str) -> bool:  # will never become ready
            return self._status[dep].state == State.BROKEN or dep in self._blocked

        with self._cond:
            while not (self._stopping or name in self._halted):
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
        user: dict[str, object] = {}
        if spec.run_as is not None:
            env.update(spec.run_as.env())
            user = {"user": spec.run_as.uid, "group": spec.run_as.gid,
                    "extra_groups": list(spec.run_as.groups)}
        with self._cond:
            if self._stopping or name in self._halted:
                return None
            proc = subprocess.Popen(
                ["sh", "-c", step.script],
                cwd=spec.work_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                **user,  # type: ignore[arg-type]
            )
            self._procs[name] = proc
        log = self._logs[name]
        log.write("INFO", step_name, f"started pid {proc.pid}: {step.script}")
        pipes = ((proc.stdout, "INFO", "stdout"), (proc.stderr, "WARN", "stderr"))
        for stream, level, kind in pipes:
            threading.Thread(target=log.pump, args=(stream, level, f"{step_name}/{kind}"),
                             daemon=True).start()
        threading.Thread(target=self._watch, args=(proc,), daemon=True).start()
        return proc

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Wake the driver when a process exits (it waits on the condition, not on the process)."""
        proc.wait()
        with self._cond:
            self._cond.notify_all()

    def _skip(self, name: str, step_name: str, step: Step) -> bool | str:
        """True to skip the step, False to run it, or the reason it is invalid."""
        spec = self._specs[name]
        try:
            skipped = skip_step(step.skip_if, {**self._base_env, **spec.env, **step.env})
        except SkipIfError as exc:
            self._logs[name].write("ERROR", step_name, str(exc))
            return f"{step_name}: {exc}"
        if skipped:
            self._logs[name].write("INFO", step_name, f"skipped (SkipIf {step.skip_if})")
        return skipped

    def _run_step(self, name: str, step_name: str, step: Step,
                  default_timeout: float | None) -> tuple[bool, str]:
        """Run a step to completion; returns (succeeded, reason)."""
        skipped = self._skip(name, step_name, step)
        if isinstance(skipped, str):
            return False, skipped
        if skipped:
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
        """ERRORED in the current state, then restart; True when the component is now BROKEN."""
        now = time.monotonic()
        with self._cond:
            state = self._status[name].state
            counted = state if state in COUNTED_STATES else State.NEW
            times = self._error_times[name].setdefault(counted, [])
            if times and now - times[-1] >= self._policy.error_window_s:
                times.clear()  # the count resets after an hour without errors
            times.append(now)
            errors = len(times)
        self._set(name, State.ERRORED, errors=errors, pid=None, message=reason)
        if errors >= self._policy.max_errors:
            self._set(name, State.BROKEN, message=f"{reason}; {errors} errors in "
                      f"{counted.value}, giving up")
            return True
        delay = self._policy.backoff(errors)
        self._logs[name].write("INFO", "lifecycle", f"restarting in {delay:g}s" if delay
                               else "restarting")
        if delay:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or name in self._halted,
                                    timeout=delay)
        return False

    def _restart_note(self, name: str) -> str:
        errors = self.status(name).errors
        return f"restart after {errors} error(s)" if errors else ""

    def _drive(self, name: str, installed: bool) -> None:
        try:
            self._drive_lifecycle(name, installed)
        except Exception as exc:  # a runtime bug must not leave a component silently STARTING
            self._logs[name].write("ERROR", "lifecycle", f"runtime error: {exc!r}")
            self._set(name, State.BROKEN, pid=None, message=f"runtime error: {exc!r}")

    def _drive_lifecycle(self, name: str, installed: bool) -> None:
        spec = self._specs[name]
        waited = False
        while not self._stopped(name):
            if not installed:
                if spec.install is not None:
                    ok, reason = self._run_step(name, "Install", spec.install,
                                                DEFAULT_INSTALL_TIMEOUT)
                    if self._stopped(name):
                        return
                    if not ok:
                        if self._record_error(name, reason):
                            return
                        continue
                installed = True
                self._set(name, State.INSTALLED, message="")
            if not waited:
                # The nucleus installs first, then waits for dependencies (Lifecycle.java).
                if not self._wait_dependencies(name):
                    return
                waited = True
            step_name, step = ("Startup", spec.startup) if spec.startup else ("Run", spec.run)
            if step is None:
                self._set(name, State.FINISHED, message="installed; no Run step")
                return
            self._set(name, State.STARTING, message=self._restart_note(name))
            outcome = self._run_service(name, step_name, step)
            if outcome is None:
                return
            if self._record_error(name, outcome):
                return

    def _run_service(self, name: str, step_name: str, step: Step) -> str | None:
        """Run a Startup or Run step as the nucleus does; None when the component is done
        (FINISHED or stopping), else the reason it errored."""
        skipped = self._skip(name, step_name, step)
        if isinstance(skipped, str):
            return skipped
        if skipped:  # RunStatus.NothingDone
            self._set(name, State.FINISHED, message=f"{step_name} skipped")
            return None
        startup = step_name == "Startup"
        with self._cond:
            self._reported[name] = None
        try:
            proc = self._spawn(name, step_name, step)
        except OSError as exc:
            self._logs[name].write("ERROR", step_name, f"could not start: {exc}")
            return f"{step_name} could not start: {exc}"
        if proc is None:
            return None
        if not startup:
            self._set(name, State.RUNNING, pid=proc.pid, message="")
        else:
            self._set(name, pid=proc.pid)
        timeout = step.timeout if step.timeout is not None else (
            DEFAULT_STARTUP_TIMEOUT if startup else None)
        deadline = None if timeout is None else time.monotonic() + timeout
        exited = False
        while True:
            with self._cond:
                while True:
                    if self._stopping or name in self._halted:
                        return None
                    reported = self._reported[name]
                    self._reported[name] = None
                    state = self._status[name].state
                    code = proc.poll()
                    waiting_for_start = startup and state == State.STARTING
                    timed_out = deadline is not None and time.monotonic() >= deadline and (
                        waiting_for_start or not startup)
                    if reported is not None or timed_out or (code is not None and not exited):
                        break
                    left = None if deadline is None or not (waiting_for_start or not startup) \
                        else max(0.0, deadline - time.monotonic())
                    self._cond.wait(left)
            if reported == State.RUNNING:
                self._set(name, State.RUNNING, message="reported RUNNING")
                continue
            if reported == State.FINISHED:
                _kill_group(proc, self._policy.stop_grace_s)
                self._set(name, State.FINISHED, pid=None, message="reported FINISHED")
                return None
            if reported == State.ERRORED:
                _kill_group(proc, self._policy.stop_grace_s)
                self._logs[name].write("ERROR", step_name, "component reported ERRORED")
                return "component reported ERRORED over IPC"
            if timed_out:
                _kill_group(proc, self._policy.stop_grace_s)
                self._logs[name].write("ERROR", step_name, f"timed out after {timeout:g}s")
                return f"{step_name} timed out after {timeout:g}s"
            exited = True
            self._logs[name].write("INFO" if code == 0 else "ERROR", step_name,
                                   f"exited with code {code}")
            if code != 0:
                _kill_leftovers(proc)
                return f"{step_name} exited with code {code}"
            if not startup:
                self._set(name, State.FINISHED, pid=None, message="Run exited with code 0")
                return None
            if state == State.STARTING:
                self._set(name, State.RUNNING, message="Startup exited with code 0")
            # RUNNING with whatever the Startup left in the background, until stop or a report.
            deadline = None

    # ----- stopping -----
    def stop(self, join_timeout: float = 30.0) -> None:
        """Stop dependents before their dependencies: Shutdown step, then SIGTERM/SIGKILL."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for name in reversed(self._order):
            self._stop_component(name)
        deadline = time.monotonic() + join_timeout
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        for log in self._logs.values():
            log.close()

    def _stop_component(self, name: str, final: bool = True) -> None:
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
        if not final:
            return
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
