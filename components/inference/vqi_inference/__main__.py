"""Entry point: `python -m vqi_inference` (the recipe's Run script).

Exit codes: the table in shared/component.py.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict

from shared.component import run

from . import COMPONENT_NAME, settings
from .model import load
from .service import Service


def build(ipc: Any, raw: Dict[str, Any]) -> Service:
    config = settings.parse(raw)
    model = load(os.environ.get("VQI_MODEL_DIR"), settings.session_settings(config))
    return Service(ipc, model, config, os.environ.get("AWS_IOT_THING_NAME", ""),
                   os.environ.get("VQI_ACCEPTANCE_DIR"),
                   os.environ.get("GREENGRASS_COMPONENT_VERSION", ""))


if __name__ == "__main__":
    sys.exit(run(COMPONENT_NAME, build))
