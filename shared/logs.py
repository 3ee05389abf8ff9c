"""Logging set-up shared by components: one line per event on stdout, which the nucleus captures."""

from __future__ import annotations

import logging
import os
import sys


def setup(component: str) -> logging.Logger:
    level = os.environ.get("VQI_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        stream=sys.stdout,
        level=getattr(logging, level, logging.INFO),
        format=f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s",
    )
    return logging.getLogger(component)
