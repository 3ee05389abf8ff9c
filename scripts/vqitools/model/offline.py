"""Keep Ultralytics from reaching the network: no weight, font, requirement or telemetry fetches.

Call :func:`make_offline` before the first ``import ultralytics`` anywhere in the process.
What it does (and why each is needed):

* ``YOLO_OFFLINE=1``: ``ultralytics.utils.is_online()`` returns False, which disables hub
  calls, GitHub asset lookups and update checks.
* ``YOLO_AUTOINSTALL=false``: ``check_requirements`` never runs ``pip install``.
* settings ``sync=False``: no anonymous usage events.
* ``check_font`` replaced by a local-only lookup: ``check_dataset`` always asks for Arial.ttf and
  would try an HTTP HEAD for it; with ``plots=False`` no font is ever drawn with.
* Training must use a model YAML (no ``*.pt`` name that triggers a download) and ``amp=False``
  (the AMP check downloads a reference model).
"""

from __future__ import annotations

import os

OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "true"}


def make_offline() -> list[str]:
    """Apply the offline settings; return a human-readable list of what was set."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    from ultralytics.utils import SETTINGS

    if SETTINGS.get("sync", True):
        SETTINGS.update({"sync": False})
    import ultralytics.data.utils as data_utils
    import ultralytics.utils.checks as checks

    def local_font(font: str = "Arial.ttf") -> None:
        """Offline stand-in: never download; plots are disabled so no font is needed."""
        return None

    checks.check_font = local_font
    data_utils.check_font = local_font
    return [f"{k}={os.environ[k]}" for k in OFFLINE_ENV] + [
        "settings.sync=False", "check_font=local-only", "amp=False", "pretrained=False",
        "plots=False"]
