"""Entry point: `python -m vqi_uploader` (the recipe's Run script).

Exit codes: the table in shared/component.py.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Dict

from shared.component import run

from . import COMPONENT_NAME
from .settings import parse, stream_manager_port


def build(ipc: Any, raw: Dict[str, Any]) -> Any:
    from .service import Uploader  # needs the stream-manager SDK

    cfg = parse(raw)
    port = stream_manager_port(dict(os.environ))
    logging.getLogger(COMPONENT_NAME).info("Stream Manager port %d", port)
    work = os.environ.get("VQI_WORK_DIR") or os.getcwd()
    return Uploader(cfg, ipc, work, os.environ.get("AWS_IOT_THING_NAME", ""),
                    os.environ.get("VQI_KERNEL_ROOT", ""))


if __name__ == "__main__":
    sys.exit(run(COMPONENT_NAME, build))
