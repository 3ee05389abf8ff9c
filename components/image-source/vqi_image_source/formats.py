"""Image formats by magic bytes (never by extension), and whether a file looks fully written.

The end-of-image check lets a closed file be taken at once when its trailer is there, and keeps a
half-written JPEG/PNG (writer paused, or reopened the file) from reaching inference as an image.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Optional

JPEG = "jpeg"
PNG = "png"
BMP = "bmp"
TIFF = "tiff"

HEAD_BYTES = 16
JPEG_TAIL_BYTES = 4096  # some encoders pad a little after the EOI marker
PNG_TAIL_BYTES = 64


def sniff(head: bytes) -> Optional[str]:
    """The image format named by the first bytes, or None for anything else."""
    if head[:3] == b"\xff\xd8\xff":
        return JPEG
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return PNG
    if head[:2] == b"BM" and len(head) >= 6:
        return BMP
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    return None


def is_complete(kind: str, head: bytes, tail: bytes, size: int) -> bool:
    """Whether a file of this format with these first/last bytes and size is fully written."""
    if kind == JPEG:
        return b"\xff\xd9" in tail[-JPEG_TAIL_BYTES:]
    if kind == PNG:
        return b"IEND" in tail[-PNG_TAIL_BYTES:]
    if kind == BMP:
        declared = struct.unpack_from("<I", head, 2)[0]
        return declared == 0 or size >= declared  # 0: header leaves the size out
    return True  # TIFF has no trailer; rely on close or stability


def describe(head: bytes) -> str:
    """Short printable form of unknown magic bytes for a quarantine reason."""
    return head[:8].hex(" ") if head else "(empty)"


@dataclass(frozen=True)
class Inspection:
    kind: Optional[str]  # None: not an image
    complete: bool
    head: bytes


def inspect(path: str, size: int) -> Inspection:
    """Read the head and tail of a regular file (without following a symlink)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        head = os.pread(fd, HEAD_BYTES, 0)
        tail_len = min(size, JPEG_TAIL_BYTES)
        tail = os.pread(fd, tail_len, size - tail_len) if tail_len else b""
    finally:
        os.close(fd)
    kind = sniff(head)
    complete = kind is not None and is_complete(kind, head, tail, size)
    return Inspection(kind, complete, head)


