"""Entry point: `python -m vqi_dashboard` (the recipe's Startup script).

Exit codes: the table in shared/component.py.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict

from shared.component import run

from . import COMPONENT_NAME
from .service import Dashboard
from .settings import parse


def build(ipc: Any, raw: Dict[str, Any]) -> Dashboard:
    work = os.environ.get("VQI_WORK_DIR") or os.getcwd()
    return Dashboard(ipc, parse(raw), work, os.environ.get("AWS_IOT_THING_NAME", ""))


if __name__ == "__main__":
    sys.exit(run(COMPONENT_NAME, build))
