"""Make the uploader package importable (components/uploader is not on the pytest pythonpath)."""

from __future__ import annotations

import os
import sys

UPLOADER_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "components", "uploader")
if os.path.abspath(UPLOADER_DIR) not in sys.path:
    sys.path.insert(0, os.path.abspath(UPLOADER_DIR))
