"""Deciding when an inbox file may be taken, and in which order.

A file is taken when it is complete: closed after writing (or renamed into place) with its image
trailer present, or unchanged in size and mtime for StabilitySeconds. A file that inotify shows
open for writing is never judged, and an image without its end (a slow FTP or SMB upload that
pauses between chunks, a writer that truncates and rewrites) waits until it has not changed for
IncompleteSeconds, a longer window, before it counts as truncated. Files that will never be
images (wrong magic bytes, too large, symlinks, FIFOs) are sent to quarantine once stable.
Ready files wait in a heap, oldest first, until the service has room in flight: a burst of
thousands waits on disk, held here as a few small records.
"""

from __future__ import annotations

import fnmatch
import heapq
import itertools
import os
import stat
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

from . import formats
from .settings import Settings

WAIT = "wait"
READY = "ready"
QUARANTINE = "quarantine"


@dataclass
class Candidate:
    path: str
    size: int
    mtime_ns: int
    ino: int
    changed_at: float  # monotonic time the size/mtime was last seen to change (or first seen)
    closed: bool = False  # closed after writing / renamed in, at this size and mtime
    inspection: Optional[formats.Inspection] = None
    writing: bool = False  # inotify: created or modified since the last close after writing


@dataclass(frozen=True)
class Decision:
    verdict: str
    reason: str = ""


def matches(name: str, patterns: List[str]) -> bool:
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in patterns)


def assess(c: Candidate, settings: Settings, now: float, wall: float) -> Decision:
    """What to do with a tracked regular file right now (reads its head and tail if needed)."""
    age = wall - c.mtime_ns / 1e9

    def unchanged_for(seconds: float) -> bool:  # mtime in the future: wait
        return now - c.changed_at >= seconds or (0 <= age and age >= seconds)

    stable = unchanged_for(settings.stability_s)
    settled = unchanged_for(max(settings.incomplete_s, settings.stability_s))
    if c.writing and not settled:
        return Decision(WAIT)  # still open for writing: never judged (a stuck writer: settled)
    if not (c.closed or stable):
        return Decision(WAIT)
    if c.size > settings.max_file_bytes:
        return Decision(QUARANTINE, f"file is {c.size} bytes, over MaxFileBytes "
                                    f"({settings.max_file_bytes})")
    if c.size == 0:
        return Decision(QUARANTINE, f"empty file, unchanged for {settings.incomplete_s:g} s") \
            if settled else Decision(WAIT)
    if c.inspection is None:
        c.inspection = formats.inspect(c.path, c.size)
    found = c.inspection
    if found.kind is None:
        if not stable:
            return Decision(WAIT)
        return Decision(QUARANTINE, "not an image: magic bytes " + formats.describe(found.head)
                        + " are not JPEG, PNG, BMP or TIFF")
    if not found.complete:
        if not settled:
            return Decision(WAIT)  # a slow writer may still add the rest: judged again later
        return Decision(QUARANTINE, f"incomplete {found.kind}: no end of image, and unchanged "
                                    f"for {settings.incomplete_s:g} s (IncompleteSeconds)")
    return Decision(READY)


class Intake:
    """Inbox files seen but not yet claimed or quarantined."""

    def __init__(self, inbox: str, settings: Settings) -> None:
        self.inbox = inbox
        self.settings = settings
        self._pending: Dict[str, Candidate] = {}
        self._ready: Dict[str, Candidate] = {}
        self._heap: List[Tuple[int, int, str]] = []
        self._seq = itertools.count()

    # -- names -------------------------------------------------------------------------------------
    def ignored_dir(self, name: str) -> bool:
        return matches(name, self.settings.ignore_patterns)

    def wanted(self, path: str) -> bool:
        """Not under an ignored folder, not an ignored name, and an included name."""
        rel = os.path.relpath(path, self.inbox)
        parts = rel.split(os.sep)
        if rel.startswith("..") or any(matches(p, self.settings.ignore_patterns) for p in parts):
            return False
        return matches(parts[-1], self.settings.include_patterns)

    # -- tracking ----------------------------------------------------------------------------------
    def observe(self, path: str, closed: bool, now: float,
                writing: bool = False) -> Optional[Decision]:
        """Record what is at path now; a Decision to quarantine at once for links/specials."""
        if not self.wanted(path):
            self._drop(path)
            return None
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            self._drop(path)
            return None
        if not self._inside(path):
            self._drop(path)
            return None  # reached through a folder that now resolves elsewhere: not ours to move
        if stat.S_ISLNK(st.st_mode):
            self._drop(path)
            return Decision(QUARANTINE, "symbolic link (to " + _link_target(path) + "); only "
                                        "regular files inside the inbox are taken")
        if not stat.S_ISREG(st.st_mode):
            if stat.S_ISDIR(st.st_mode):
                return None
            self._drop(path)
            return Decision(QUARANTINE, "not a regular file (FIFO, socket or device)")
        self._update(path, st, closed, now, writing)
        return None

    def _update(self, path: str, st: os.stat_result, closed: bool, now: float,
                writing: bool = False) -> None:
        c = self._ready.get(path) or self._pending.get(path)
        if c is None:
            c = Candidate(path, st.st_size, st.st_mtime_ns, st.st_ino, now, closed,
                          writing=writing)
            self._pending[path] = c
            return
        if writing and not c.writing:
            c.writing = True
            c.closed = False
            if self._ready.pop(path, None) is not None:  # reopened before it was claimed
                self._pending[path] = c
        if closed:
            c.writing = False
        if (c.size, c.mtime_ns, c.ino) != (st.st_size, st.st_mtime_ns, st.st_ino):
            if c.ino != st.st_ino:  # a new file under the name (renamed over it)
                c.writing = writing
            c.size, c.mtime_ns, c.ino = st.st_size, st.st_mtime_ns, st.st_ino
            c.changed_at, c.closed, c.inspection = now, closed, None
            if self._ready.pop(path, None) is not None:
                self._pending[path] = c
        elif closed:
            c.closed = True

    def _inside(self, path: str) -> bool:
        real = os.path.realpath(os.path.dirname(path))
        root = os.path.realpath(self.inbox)
        return real == root or real.startswith(root + os.sep)

    def _drop(self, path: str) -> None:
        self._pending.pop(path, None)
        self._ready.pop(path, None)  # its heap entry is skipped when popped

    def forget_unwanted(self) -> None:
        """After a pattern change: stop tracking files the new patterns no longer take."""
        for path in [p for p in list(self._pending) + list(self._ready) if not self.wanted(p)]:
            self._drop(path)

    def forget_except(self, present: Set[str]) -> None:
        """After a full rescan: stop tracking files that are no longer there."""
        for path in [p for p in self._pending if p not in present]:
            del self._pending[path]
        for path in [p for p in self._ready if p not in present]:
            del self._ready[path]

    # -- decisions ---------------------------------------------------------------------------------
    def evaluate(self, now: float, wall: float) -> List[Tuple[str, Decision]]:
        """Move complete files to the ready heap; return those to quarantine (and stop tracking)."""
        rejected: List[Tuple[str, Decision]] = []
        for path, c in list(self._pending.items()):
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                del self._pending[path]
                continue
            if not stat.S_ISREG(st.st_mode):
                del self._pending[path]
                decision = self.observe(path, False, now)
                if decision is not None:
                    rejected.append((path, decision))
                continue
            self._update(path, st, False, now)
            try:
                decision = assess(c, self.settings, now, wall)
            except OSError:
                continue  # unreadable right now (e.g. permissions being fixed): try again later
            if decision.verdict == WAIT:
                continue
            del self._pending[path]
            if decision.verdict == READY:
                self._ready[path] = c
                heapq.heappush(self._heap, (c.mtime_ns, next(self._seq), path))
            elif self._inside(path):  # a folder swapped for a link since observe: not ours
                rejected.append((path, decision))
        return rejected

    def pop_ready(self, now: float) -> Optional[Candidate]:
        """The oldest ready file that is still unchanged; changed ones go back to pending."""
        while self._heap:
            _, _, path = heapq.heappop(self._heap)
            c = self._ready.pop(path, None)
            if c is None:
                continue
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if (st.st_size, st.st_mtime_ns, st.st_ino) != (c.size, c.mtime_ns, c.ino) \
                    or not stat.S_ISREG(st.st_mode):
                self._pending[path] = c
                self._update(path, st, False, now)
                continue
            return c
        return None

    def requeue(self, c: Candidate) -> None:
        """Put back a ready file that could not be claimed now (tried again later)."""
        self._ready[c.path] = c
        heapq.heappush(self._heap, (c.mtime_ns, next(self._seq), c.path))

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def ready(self) -> int:
        return len(self._ready)

    def tracked(self, path: str) -> bool:
        return path in self._pending or path in self._ready


def _link_target(path: str) -> str:
    try:
        return os.readlink(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except OSError:
        return "?"
