"""Linux inotify through ctypes (stdlib only), for components that watch folders.

The kernel reports a file as finished (close after write, rename into place) the moment it
happens, which polling cannot do without waiting. Callers must still rescan now and then: events
are lost on queue overflow, and nothing is reported while the process is down.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import struct
from dataclasses import dataclass
from typing import Dict, List, Optional

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = 0o2000000

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


class InotifyError(OSError):
    """inotify is unavailable or a watch could not be added (e.g. the watch limit is reached)."""


@dataclass(frozen=True)
class Event:
    wd: int
    mask: int
    cookie: int
    name: str  # file name inside the watched directory ("" for events about the directory)

    @property
    def is_dir(self) -> bool:
        return bool(self.mask & IN_ISDIR)


def _libc() -> ctypes.CDLL:
    name = ctypes.util.find_library("c") or "libc.so.6"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.inotify_init1.argtypes = [ctypes.c_int]
    lib.inotify_init1.restype = ctypes.c_int
    lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    lib.inotify_add_watch.restype = ctypes.c_int
    return lib


def parse_events(buffer: bytes) -> List[Event]:
    """Split a read() buffer into events; names are decoded like os.listdir (surrogateescape)."""
    events: List[Event] = []
    offset = 0
    while offset + _HEADER.size <= len(buffer):
        wd, mask, cookie, length = _HEADER.unpack_from(buffer, offset)
        offset += _HEADER.size
        raw = buffer[offset:offset + length].split(b"\0", 1)[0]
        offset += length
        events.append(Event(wd, mask, cookie, os.fsdecode(raw)))
    return events


class Inotify:
    """One non-blocking inotify instance; use fileno() with select/poll or read(timeout)."""

    def __init__(self) -> None:
        try:
            self._lib = _libc()
        except (OSError, AttributeError) as exc:
            raise InotifyError(errno.ENOSYS, f"inotify unavailable: {exc}") from exc
        fd = self._lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise InotifyError(err, f"inotify_init1 failed: {os.strerror(err)}")
        self._fd = fd
        self.paths: Dict[int, str] = {}

    def fileno(self) -> int:
        return self._fd

    def add_watch(self, path: str, mask: int) -> int:
        """Watch path; the same inode always gets the same descriptor, whose path is updated."""
        wd = self._lib.inotify_add_watch(self._fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise InotifyError(err, f"inotify_add_watch({path!r}) failed: {os.strerror(err)}")
        self.paths[wd] = path
        return wd

    def forget(self, wd: int) -> None:
        """Drop the path of a descriptor the kernel removed (IN_IGNORED)."""
        self.paths.pop(wd, None)

    def read(self, timeout: Optional[float] = 0.0) -> List[Event]:
        """Events available now, waiting up to timeout seconds (None = forever) for the first."""
        if timeout is None or timeout > 0:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if not ready:
                return []
        events: List[Event] = []
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            events.extend(parse_events(chunk))
        return events  # callers drop paths[wd] on IN_IGNORED, after handling the batch

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "Inotify":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
