"""Entry point: `python -m vqi_inference` (the recipe's Startup script).

Exit codes: the table in shared/component.py.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Any, Dict, Optional, Tuple

from shared.component import run

from . import COMPONENT_NAME, settings
from .model import LoadedModel, ModelError, load
from .service import Service


def load_challenger(folder: Optional[str], config: settings.InferenceConfig
                    ) -> Tuple[Optional[LoadedModel], str]:
    """The Model version's challenger, when it carries one (its unpacked challenger.zip); a
    challenger that cannot load is reported, and the champion runs alone."""
    if not folder or not os.path.isdir(folder):
        return None, ""
    try:
        # one intra-op thread: it runs on its worker alone, below the champion (challenger.py)
        session = replace(settings.session_settings(config), intra_op_threads=1)
        return load(folder, session), ""
    except ModelError as exc:
        return None, f"cannot load {folder}: {exc}"


def build(ipc: Any, raw: Dict[str, Any]) -> Service:
    config = settings.parse(raw)
    model = load(os.environ.get("VQI_MODEL_DIR"), settings.session_settings(config))
    challenger, problem = load_challenger(os.environ.get("VQI_CHALLENGER_DIR"), config)
    return Service(ipc, model, config, os.environ.get("AWS_IOT_THING_NAME", ""),
                   os.environ.get("VQI_ACCEPTANCE_DIR"),
                   os.environ.get("GREENGRASS_COMPONENT_VERSION", ""),
                   challenger=challenger, work_dir=os.environ.get("VQI_WORK_DIR", ""),
                   challenger_problem=problem)


if __name__ == "__main__":
    sys.exit(run(COMPONENT_NAME, build))
