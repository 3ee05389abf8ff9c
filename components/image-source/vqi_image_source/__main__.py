"""Entry point under Greengrass: the thin IPC edge around Service.

Exit codes: 0 after SIGTERM (the nucleus stopping us), 1 for configuration or folder errors
(reported as ERRORED so the deployment shows it), 2 when the IPC connection is lost (the nucleus
restarts the component).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Set

from shared import logs
from shared.config import ConfigError

from . import COMPONENT
from .layout import Layout, LayoutError
from .service import Service
from .settings import parse

MAX_LOOP_FAILURES = 30


class StartError(RuntimeError):
    """The component cannot run as configured (e.g. a topic it may not subscribe to)."""


def main() -> int:
    log = logs.setup(COMPONENT)
    from shared.ipc import IpcClient  # needs awscrt; imported only when running for real

    try:
        ipc = IpcClient()
    except Exception as exc:
        log.error("cannot connect to the Greengrass nucleus over IPC: %s", exc)
        return 2
    subscribed: Set[str] = set()

    def subscribe(topic: str, handler: Any = None) -> None:
        if topic not in subscribed:
            try:
                ipc.subscribe_json(topic, handler or service.submit_completion)
            except Exception as exc:
                raise StartError(f"cannot subscribe to {topic} ({type(exc).__name__}: {exc}); "
                                 "does the deployment's accessControl allow it?") from exc
            subscribed.add(topic)
            log.info("waiting for completions on %s", topic)

    try:
        settings = parse(ipc.get_configuration())
        layout = Layout.resolve(settings, os.environ)
        service = Service(settings, layout, ipc.publish_json)
        subscribe(settings.completion_topic)  # before start(): re-published claims may complete
        if settings.ready_topic:  # before start() too: a consumer that starts meanwhile is heard
            subscribe(settings.ready_topic, service.submit_ready)
        service.start()
    except (ConfigError, LayoutError, StartError, OSError) as exc:
        log.error("cannot start: %s", exc)
        _quietly(ipc.report_errored)
        ipc.close()
        return 1
    config_changed = threading.Event()

    def on_update(_: Any) -> None:  # SDK thread: never call IPC from here, just wake the loop
        config_changed.set()
        service.wake()

    ipc.on_configuration_update(on_update)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()
        service.wake()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ipc.report_running()
    log.info("watching %s (%d claimed images re-published)", layout.inbox,
             len(service.in_flight))
    code = 0
    failures = 0
    while not stop.is_set():
        if ipc.disconnected.is_set():
            log.error("lost the IPC connection; exiting so the nucleus restarts us")
            code = 2
            break
        if config_changed.is_set():
            config_changed.clear()
            try:
                new = parse(ipc.get_configuration())
            except ConfigError as exc:
                log.error("configuration update rejected, keeping the previous one: %s", exc)
            except Exception as exc:
                log.error("cannot read the updated configuration: %s", exc)
            else:
                try:
                    subscribe(new.completion_topic)
                    service.submit_settings(new)
                except StartError as exc:
                    log.error("configuration update rejected, keeping the previous one: %s", exc)
        try:
            service.run_once(1.0)
            failures = 0
        except Exception:  # a bug or an unexpected OS error: state is on disk, so keep going
            failures += 1
            log.exception("service loop failed (%d in a row)", failures)
            if failures >= MAX_LOOP_FAILURES:
                log.error("giving up; exiting so the nucleus restarts the component")
                code = 1
                break
            stop.wait(1.0)
    service.publish_metrics()
    service.close()
    ipc.close()
    return code


def _quietly(action: Any) -> None:
    try:
        action()
    except Exception:
        pass


if __name__ == "__main__":
    sys.exit(main())
