"""Recursive inbox watching: inotify for promptness, full walks as the safety net.

Camera sub-folders are watched as they appear. Without inotify (other OS, watch limit reached) the
service still works by walking the inbox, only with more latency.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterator, List, Optional, Set, Tuple

from . import inotify

log = logging.getLogger(__name__)

DIR_MASK = (inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO | inotify.IN_CREATE | inotify.IN_MODIFY
            | inotify.IN_DELETE_SELF | inotify.IN_ONLYDIR | inotify.IN_DONT_FOLLOW
            | inotify.IN_EXCL_UNLINK)
# A writer has the file open from IN_CREATE / IN_MODIFY until IN_CLOSE_WRITE (or the file is
# renamed into place, IN_MOVED_TO): such a file is never judged while it is being written.
WRITING_EVENTS = inotify.IN_CREATE | inotify.IN_MODIFY
CLOSING_EVENTS = inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO

# (path, closed after writing or renamed into place, being written: opened or modified since)
Change = Tuple[str, bool, bool]


class Watcher:
    def __init__(self, root: str, skip_dir: Callable[[str], bool]) -> None:
        self.root = root
        self.skip_dir = skip_dir
        self._ino: Optional[inotify.Inotify] = None
        self._watched: Set[str] = set()
        self._limit_logged = False
        try:
            self._ino = inotify.Inotify()
        except inotify.InotifyError as exc:
            log.warning("inotify unavailable (%s); finding files by rescans only", exc)

    @property
    def live(self) -> bool:
        """True when events arrive as files finish (inotify works for the root)."""
        return self._ino is not None and self.root in self._watched

    def fileno(self) -> Optional[int]:
        return self._ino.fileno() if self._ino is not None else None

    def _watch(self, folder: str) -> None:
        if self._ino is None or folder in self._watched:
            return
        try:
            self._ino.add_watch(folder, DIR_MASK)
            self._watched.add(folder)
        except inotify.InotifyError as exc:
            if not self._limit_logged:
                log.warning("cannot watch %s (%s); it is covered by rescans only", folder, exc)
                self._limit_logged = True

    def walk(self, top: Optional[str] = None) -> Iterator[str]:
        """Every non-folder entry under top (default the inbox), watching each folder first.

        Symlinks are yielded, never followed; a folder is watched before it is listed, so a
        file created meanwhile is either listed or reported by an event.
        """
        stack = [top or self.root]
        while stack:
            folder = stack.pop()
            self._watch(folder)
            try:
                entries = list(os.scandir(folder))
            except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
                if folder == self.root:
                    log.error("cannot list the inbox %s: %s", folder, exc)
                continue
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    if not self.skip_dir(entry.name):
                        stack.append(entry.path)
                else:
                    yield entry.path

    def read(self, timeout: float) -> Tuple[List[Change], bool]:
        """Changes reported within timeout, and whether a full rescan is needed (lost events)."""
        if self._ino is None:
            return [], False
        changes: List[Change] = []
        rescan = False
        for event in self._ino.read(timeout):
            if event.mask & inotify.IN_Q_OVERFLOW:
                log.warning("inotify queue overflowed; rescanning the inbox")
                rescan = True
                continue
            folder = self._ino.paths.get(event.wd)
            if event.mask & inotify.IN_IGNORED:
                if folder is not None:
                    self._watched.discard(folder)
                    self._ino.forget(event.wd)
                    rescan = rescan or folder == self.root
                continue
            if folder is None or not event.name:
                continue
            path = os.path.join(folder, event.name)
            if event.is_dir:
                if event.mask & (inotify.IN_CREATE | inotify.IN_MOVED_TO) \
                        and not self.skip_dir(event.name):
                    self._watched.discard(path)  # a moved-in folder may reuse a stale entry
                    changes.extend((p, False, False) for p in self.walk(path))
                continue
            closed = bool(event.mask & CLOSING_EVENTS)
            changes.append((path, closed, not closed and bool(event.mask & WRITING_EVENTS)))
        return changes, rescan

    def close(self) -> None:
        if self._ino is not None:
            self._ino.close()
            self._ino = None
