"""Can a camera that writes as another user drop files into the inbox?

On a core device this component runs as ggc_user, and the camera's writer (an FTP or SMB
account, a vendor daemon) is another user. It can add files only if the inbox is writable for a
group it belongs to and every folder above the inbox lets it pass. The default inbox lies in this
component's work folder, which the nucleus makes 0700, so no other user can reach it.
"""

from __future__ import annotations

import os
import stat
from typing import Optional

RECOMMENDED = ("use a folder outside the work folder, e.g. /var/lib/vqi/inbox, owned by the "
               "component user and a group the camera's user is in, mode 2770 (setgid: files "
               "keep the group): `install -d -o ggc_user -g camera -m 2770 /var/lib/vqi/inbox`")


def camera_access_problem(inbox: str) -> Optional[str]:
    """Why a writer in the inbox's group cannot add files, or None when it can."""
    try:
        info = os.stat(inbox)
    except OSError as exc:
        return f"cannot check the inbox {inbox}: {exc.strerror}"
    mode = stat.filemode(info.st_mode)
    if info.st_mode & (stat.S_IWGRP | stat.S_IXGRP) != stat.S_IWGRP | stat.S_IXGRP:
        return f"the inbox {inbox} ({mode}) is not writable for its group; {RECOMMENDED}"
    folder = os.path.dirname(os.path.abspath(inbox))
    while True:
        try:
            parent = os.stat(folder)
        except OSError as exc:
            return f"cannot check {folder} above the inbox: {exc.strerror}"
        passes = parent.st_mode & stat.S_IXOTH or (
            parent.st_gid == info.st_gid and parent.st_mode & stat.S_IXGRP)
        if not passes:
            return (f"{folder} ({stat.filemode(parent.st_mode)}), above the inbox {inbox}, "
                    f"cannot be entered by the inbox's group or others; {RECOMMENDED}")
        up = os.path.dirname(folder)
        if up == folder:
            return None
        folder = up
