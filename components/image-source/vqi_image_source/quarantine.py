"""Moving rejected inbox entries aside with the reason beside them, so nothing is silently lost.

Entries are renamed, never opened or followed: a symlink moves as the link itself, a FIFO is never
read. The reason file is written first, so a quarantined entry always has one.
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any, Dict, Optional

from shared.atomic import unlink_quietly
from shared.messages import utc_now

from . import durable
from .durable import REASON_SUFFIX


def quarantine(root: str, src: str, source: str, reason: str,
               details: Optional[Dict[str, Any]] = None, wall: Optional[float] = None) -> str:
    """Move src to root/<day>/<stamp>__<name> with <that>.reason.json; returns the new path.

    FileNotFoundError if src vanished meanwhile (the reason file is removed again).
    """
    wall = time.time() if wall is None else wall
    folder = durable.day_folder(root, wall)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(wall)) + "-" + secrets.token_hex(3)
    dest = os.path.join(folder, f"{stamp}__{durable.safe_name(os.path.basename(src))}")
    record: Dict[str, Any] = {"reason": reason, "source": durable.safe_relpath(source),
                              "time": utc_now()}
    if details:
        record.update(details)
    durable.write_json(dest + REASON_SUFFIX, record, sync=False)
    try:
        os.rename(src, dest)
    except OSError:
        unlink_quietly(dest + REASON_SUFFIX)
        raise
    return dest
