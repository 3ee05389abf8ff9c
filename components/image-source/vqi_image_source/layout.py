"""Where images live: inbox (camera writes), processing (claimed), done, failed, quarantine.

Claims and completions are renames, which are atomic only inside one filesystem, so every folder
must be on the inbox's filesystem; and the state folders must not sit inside the inbox, or the
watcher would take its own claimed files again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from shared.component import StartError

from .settings import Settings

WORK_ENV = "VQI_WORK_DIR"


class LayoutError(StartError):
    """The folders cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Layout:
    inbox: str
    processing: str
    done: str
    failed: str
    quarantine: str

    @classmethod
    def resolve(cls, settings: Settings, env: Mapping[str, str]) -> "Layout":
        work = env.get(WORK_ENV) or os.getcwd()
        state = settings.state_dir or work
        inbox = settings.inbox_dir or os.path.join(work, "inbox")
        return cls(
            inbox=os.path.abspath(inbox),
            processing=os.path.abspath(os.path.join(state, "processing")),
            done=os.path.abspath(os.path.join(state, "done")),
            failed=os.path.abspath(os.path.join(state, "failed")),
            quarantine=os.path.abspath(os.path.join(state, "quarantine")),
        )

    def state_folders(self) -> "tuple[str, ...]":
        return (self.processing, self.done, self.failed, self.quarantine)

    def prepare(self) -> None:
        """Create the folders and check they can hold atomic renames; LayoutError if not."""
        for path in (self.inbox,) + self.state_folders():
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as exc:
                raise LayoutError(f"cannot create folder {path}: {exc.strerror}") from exc
            if not os.path.isdir(path) or os.path.islink(path):
                raise LayoutError(f"{path} must be a real folder (not a file or symlink)")
        inbox_real = os.path.realpath(self.inbox)
        inbox_dev = os.stat(self.inbox).st_dev
        for path in self.state_folders():
            real = os.path.realpath(path)
            if real == inbox_real or real.startswith(inbox_real + os.sep):
                raise LayoutError(
                    f"{path} is inside the inbox {self.inbox}; set StateDir outside InboxDir")
            if inbox_real.startswith(real + os.sep):
                raise LayoutError(f"the inbox {self.inbox} is inside {path}; use another InboxDir")
            if os.stat(path).st_dev != inbox_dev:
                raise LayoutError(
                    f"{path} is on another filesystem than the inbox {self.inbox}; images are "
                    "moved by atomic rename, so set StateDir to a folder on the inbox's filesystem")
            if not os.access(path, os.W_OK | os.X_OK):
                raise LayoutError(f"{path} is not writable by this component's user")
        if not os.access(self.inbox, os.R_OK | os.W_OK | os.X_OK):
            raise LayoutError(f"the inbox {self.inbox} must be readable and writable (files are "
                              "moved out of it)")
