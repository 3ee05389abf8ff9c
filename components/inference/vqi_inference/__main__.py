"""Entry point: `python -m vqi_inference` (the recipe's Run script)."""

from __future__ import annotations

import os
import signal
import sys
import threading

from shared import logs
from shared.config import ConfigError

from . import COMPONENT_NAME, settings
from .model import ModelError, load
from .service import Service

EXIT_BAD_MODEL_OR_CONFIG = 1
EXIT_NO_IPC = 2
EXIT_IPC_LOST = 3


def main() -> int:
    log = logs.setup(COMPONENT_NAME)
    thing = os.environ.get("AWS_IOT_THING_NAME", "")
    try:
        from shared.ipc import IpcClient

        ipc = IpcClient()
    except Exception as exc:
        log.error("cannot connect to the Greengrass nucleus over IPC: %s", exc)
        return EXIT_NO_IPC
    try:
        config = settings.parse(ipc.get_configuration())
        model = load(os.environ.get("VQI_MODEL_DIR"), settings.session_settings(config))
        service = Service(ipc, model, config, thing)
    except (ModelError, ConfigError) as exc:
        log.error("cannot start: %s", exc)
        try:
            ipc.report_errored()
        finally:
            ipc.close()
        return EXIT_BAD_MODEL_OR_CONFIG

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    service.start()
    ipc.announce_ready(config.ready_topic, COMPONENT_NAME, config.image_topic)
    ipc.report_running()
    while not stop.wait(0.5):
        if ipc.disconnected.is_set():
            break
    lost = ipc.disconnected.is_set() and not stop.is_set()
    log.info("stopping (%s)", "IPC connection lost" if lost else "signal")
    service.stop()
    ipc.close()
    return EXIT_IPC_LOST if lost else 0


if __name__ == "__main__":
    sys.exit(main())
