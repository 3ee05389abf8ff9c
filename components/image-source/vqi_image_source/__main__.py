"""Entry point: `python -m vqi_image_source` (the recipe's Run script).

Exit codes: the table in shared/component.py.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict

from shared.component import run

from . import COMPONENT_NAME
from .layout import Layout
from .service import Service
from .settings import parse


def build(ipc: Any, raw: Dict[str, Any]) -> Service:
    settings = parse(raw)
    return Service(settings, Layout.resolve(settings, os.environ), ipc.publish_json,
                   subscribe=ipc.subscribe_json,
                   thing_name=os.environ.get("AWS_IOT_THING_NAME", ""))


if __name__ == "__main__":
    sys.exit(run(COMPONENT_NAME, build))
