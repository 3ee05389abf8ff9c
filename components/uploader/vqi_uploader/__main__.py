"""Entry point: `python -m vqi_uploader` (the recipe's Run script)."""

from __future__ import annotations

import os
import signal
import sys
import threading

from shared import logs
from shared.config import ConfigError

from . import COMPONENT_NAME
from .config import load_config, stream_manager_port


def main() -> int:
    log = logs.setup(COMPONENT_NAME)
    from shared.ipc import IpcClient

    from .service import Uploader

    ipc = IpcClient()
    try:
        cfg = load_config(ipc.get_configuration())
        log.info("Stream Manager port %d", stream_manager_port(dict(os.environ)))
    except ConfigError as exc:
        log.error("%s", exc)
        ipc.report_errored()
        return 2
    work = os.environ.get("VQI_WORK_DIR") or os.getcwd()
    uploader = Uploader(cfg, ipc, work, os.environ.get("AWS_IOT_THING_NAME", ""))
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    uploader.start()
    ipc.announce_ready(cfg.ready_topic, COMPONENT_NAME, cfg.result_topic)
    ipc.report_running()
    while not done.wait(0.5):
        if ipc.disconnected.is_set():
            break
    uploader.stop()
    ipc.close()
    if ipc.disconnected.is_set() and not done.is_set():
        log.error("lost the nucleus connection; exiting so the nucleus restarts the component")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
