"""Finding a result's image on disk, only ever inside the folders the dashboard may serve.

A result names the image where Inference read it (`<state>/processing/<name>`); by the time
someone looks, ImageSource has moved it to `<state>/done/<UTC day>/<name>` (or `failed/`). The
candidates are built from the file's name alone, under each configured root, and a candidate is
served only if it is a regular file whose real path (every symlink resolved) is still inside
that root, opened without following a symlink at the last step. A path in a message is never
trusted further than that: a result naming /etc/passwd finds nothing.
"""

from __future__ import annotations

import os
import re
import stat
from datetime import datetime, timedelta, timezone
from typing import Iterator, Optional, Sequence, Tuple

IMAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # fullmatch: no trailing newline
TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
         ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"}
MAX_IMAGE_BYTES = 64 * 1024 * 1024
FINAL_FOLDERS = ("done", "failed")


def content_type(name: str) -> Optional[str]:
    return TYPES.get(os.path.splitext(name)[1].lower())


def inside(path: str, root: str) -> bool:
    """`path` (already real) is `root` (already real) or below it."""
    return os.path.commonpath([path, root]) == root and path != root


def candidates(recorded: str, when: float, root: str) -> Iterator[str]:
    """Where the image may be under `root`, most likely first."""
    name = os.path.basename(recorded)
    if not name or name in (".", ".."):
        return
    yield os.path.join(root, "processing", name)
    day = datetime.fromtimestamp(when, timezone.utc)
    for folder in FINAL_FOLDERS:
        for offset in (0, 1, -1):  # completed on the same UTC day, or just across midnight
            yield os.path.join(root, folder, f"{day + timedelta(days=offset):%Y-%m-%d}", name)
    for folder in FINAL_FOLDERS:  # held longer (retention in days): look through every day
        base = os.path.join(root, folder)
        try:
            days = sorted((e.name for e in os.scandir(base) if e.is_dir(follow_symlinks=False)),
                          reverse=True)
        except OSError:
            continue
        for d in days:
            yield os.path.join(base, d, name)


def find(recorded: str, when: float, roots: Sequence[str]) -> Optional[Tuple[str, str]]:
    """(real path, content type) of the result's image, or None if it is not under a root."""
    kind = content_type(recorded)
    if kind is None:
        return None
    seen = set()
    for root in roots:
        for path in candidates(recorded, when, root):
            if path in seen:
                continue
            seen.add(path)
            real = os.path.realpath(path)
            if real != path or not inside(real, root):  # a symlink on the way, or outside
                continue
            if os.path.isfile(real):
                return real, kind
    return None


def read(path: str, roots: Sequence[str], limit: int = MAX_IMAGE_BYTES) -> bytes:
    """The file's bytes, checked again on the open file: a folder on the way swapped for a
    symlink since `find` (the file it opened must still be inside a root), a symlink as the file
    itself (O_NOFOLLOW), a FIFO (O_NONBLOCK: never waits), anything but a regular file, and
    anything larger than `limit` are refused with OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        opened = os.readlink(f"/proc/self/fd/{fd}")
        if not any(inside(opened, root) for root in roots):
            raise OSError(f"{path} resolved outside the image folders")
        if st.st_size > limit:
            raise OSError(f"{path} is larger than {limit} bytes")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
