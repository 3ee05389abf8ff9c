"""The one edge of every component process: connect, configure, report, run, stop, close.

The nucleus starts each component's Run script and reads only two things back: the state reported
over IPC (RUNNING, ERRORED) and the exit code (non-zero = ERRORED, restarted up to three times in an
hour, then BROKEN). The exit code therefore says why, for the person reading the log:

| code | meaning                                                                                 |
|------|-----------------------------------------------------------------------------------------|
| 0    | stopped by SIGTERM/SIGINT (the nucleus stopping or restarting the component)            |
| 1    | cannot start: configuration, model, folders, or a topic accessControl does not allow    |
|      | (reported ERRORED first, so the deployment shows it)                                    |
| 2    | no IPC connection to the nucleus at start (not run by a nucleus, or no socket/SVCUID)   |
| 3    | the IPC connection was lost while running (the nucleus restarts us)                     |
| 4    | the main loop failed MAX_LOOP_FAILURES times in a row (a bug; tracebacks are logged)    |

Threads: IPC callbacks run on the SDK client's executor threads (GreengrassCoreIPCClientV2's
default ThreadPoolExecutor), never on its network thread, so they may call IPC; they should still
return quickly. Configuration updates are only flagged there and read here, on the main thread,
so a component sees them in order with its own work.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any, Callable, Dict, Optional, Protocol

from shared.config import ConfigError

EXIT_STOPPED = 0
EXIT_CANNOT_START = 1
EXIT_NO_NUCLEUS = 2
EXIT_NUCLEUS_LOST = 3
EXIT_LOOP_FAILED = 4
MAX_LOOP_FAILURES = 30
FAILURE_PAUSE_S = 1.0  # between failed turns: a persistent fault logs once a second, not a flood
TURN_S = 1.0


class StartError(RuntimeError):
    """The component cannot run as configured (a model it may not load, a folder it cannot use,
    a topic it may not subscribe to); the message says what to change."""


class Component(Protocol):
    def start(self) -> None:
        """Subscribe and start working; StartError, ConfigError or OSError if it cannot."""

    def run_once(self, timeout: float) -> None:
        """One turn of the main loop: returns within `timeout`, or sooner after wake()."""

    def wake(self) -> None:
        """Make run_once return soon (any thread, signal handlers included)."""

    def reconfigure(self, raw: Dict[str, Any]) -> None:
        """Apply a new configuration, or raise ConfigError/StartError and keep the previous one."""

    def stop(self) -> None:
        """Finish what was accepted, publish the last metrics, stop threads."""


Build = Callable[[Any, Dict[str, Any]], Component]


class Idle:
    """run_once and wake for a component whose work happens on its own threads."""

    def __init__(self) -> None:
        self._woken = threading.Event()

    def run_once(self, timeout: float) -> None:
        self._woken.wait(timeout)
        self._woken.clear()

    def wake(self) -> None:
        self._woken.set()


def setup_logging(component: str) -> logging.Logger:
    """One line per event on stdout, which the nucleus captures into the component's log."""
    level = os.environ.get("VQI_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stdout,
        level=getattr(logging, level, logging.INFO),
        format=f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s",
    )
    return logging.getLogger(component)


def run(name: str, build: Build, connect: Optional[Callable[[], Any]] = None) -> int:
    """Run component `name` under the nucleus; returns its exit code (see the table above)."""
    log = setup_logging(name)
    try:
        if connect is None:
            from shared.ipc import IpcClient  # needs awscrt: imported only when running for real

            connect = IpcClient
        ipc = connect()
    except Exception as exc:
        log.error("cannot connect to the Greengrass nucleus over IPC: %s", exc)
        return EXIT_NO_NUCLEUS
    try:
        edge = Edge(ipc, log)
        if not edge.start(build):
            return EXIT_CANNOT_START

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            edge.request_stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        return edge.serve()
    finally:
        ipc.close()


class Edge:
    """The main loop around a started component: configuration updates, the IPC connection,
    failures of the loop itself, and the stop."""

    def __init__(self, ipc: Any, log: Optional[logging.Logger] = None) -> None:
        self.ipc = ipc
        self.log = log or logging.getLogger(__name__)
        self.component: Optional[Component] = None
        self._stop = threading.Event()
        self._changed = threading.Event()
        # Before the first read: an update that lands while the component starts is not missed.
        ipc.on_configuration_update(self._on_update)

    def start(self, build: Build) -> bool:
        """Build the component from the current configuration and start it; False (logged and
        reported ERRORED) if it cannot run as configured."""
        try:
            component = build(self.ipc, self.ipc.get_configuration())
            component.start()
        except (ConfigError, StartError, OSError) as exc:
            self.log.error("cannot start: %s", exc)
            try:
                self.ipc.report_errored()
            except Exception as report_exc:
                self.log.warning("cannot report ERRORED: %s", report_exc)
            return False
        self.component = component
        return True

    def request_stop(self) -> None:
        """From any thread or a signal handler: serve() stops the component and returns 0."""
        self._stop.set()
        if self.component is not None:
            self.component.wake()

    def _on_update(self, _key_path: Any) -> None:
        self._changed.set()
        if self.component is not None:
            self.component.wake()

    def serve(self) -> int:
        """Report RUNNING and run the started component until stopped; returns the exit code."""
        component = self.component
        assert component is not None, "start() first"
        self.ipc.report_running()
        code = EXIT_STOPPED
        failures = 0
        while not self._stop.is_set():
            if self.ipc.disconnected.is_set():
                self.log.error("lost the IPC connection; exiting so the nucleus restarts the "
                               "component")
                code = EXIT_NUCLEUS_LOST
                break
            if self._changed.is_set():
                self._changed.clear()
                self._reconfigure()
            try:
                component.run_once(TURN_S)
                failures = 0
            except Exception:  # a bug or an unexpected OS error: state is on disk, so keep going
                failures += 1
                self.log.exception("main loop failed (%d in a row)", failures)
                if failures >= MAX_LOOP_FAILURES:
                    self.log.error("giving up; exiting so the nucleus restarts the component")
                    code = EXIT_LOOP_FAILED
                    break
                self._stop.wait(FAILURE_PAUSE_S)
        component.stop()
        return code

    def _reconfigure(self) -> None:
        try:
            raw = self.ipc.get_configuration()
        except Exception as exc:
            self.log.error("cannot read the updated configuration, keeping the previous one: %s",
                           exc)
            return
        assert self.component is not None
        try:
            self.component.reconfigure(raw)
        except (ConfigError, StartError) as exc:
            self.log.error("configuration update rejected, keeping the previous one: %s", exc)
