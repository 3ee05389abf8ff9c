"""Crash-safe file replacement, for the state a restart relies on (ImageSource's claims, the
Uploader's journals and staged sidecars): a reader sees the old or the new content, never a mix."""

from __future__ import annotations

import os
import secrets
from typing import Union


def write_atomic(path: str, data: Union[bytes, str], sync: bool = True, mode: int = 0o644) -> None:
    """Replace `path` with `data`: a temp file in the same folder, fsync (unless `sync` is False:
    a power cut may then lose the new content, never corrupt the old), rename.

    The temp name is `.<random>.tmp`, not derived from `path`: a name near NAME_MAX would make
    it too long, and two writers of one path must not share a temp file. Leftovers start with a
    dot and end in `.tmp`, so owners can recognise and remove them on start.
    """
    body = data.encode("utf-8") if isinstance(data, str) else data
    tmp = os.path.join(os.path.dirname(path), f".{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        unlink_quietly(tmp)
        raise


def fsync_dir(path: str) -> None:
    """Make the names created or renamed inside a folder survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: str) -> bool:
    """Remove a file that may already be gone; True if it was removed now."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
