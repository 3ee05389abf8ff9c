"""Claim files: JSON state written crash-safe, and names safe to carry in JSON and logs."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from shared.atomic import write_atomic

REASON_SUFFIX = ".reason.json"  # written beside a failed or quarantined file


def write_json(path: str, data: Any, sync: bool = True) -> None:
    """Atomically replace path with JSON: old or new, never partial (shared/atomic.py)."""
    body = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True)
    write_atomic(path, body, sync=sync)


def read_json(path: str) -> Any:
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def day_folder(root: str, wall: float) -> str:
    """root/YYYY-MM-DD (UTC) created on demand, so retention can work a day at a time."""
    path = os.path.join(root, time.strftime("%Y-%m-%d", time.gmtime(wall)))
    os.makedirs(path, exist_ok=True)
    return path


def safe_name(name: str, max_bytes: int = 200) -> str:
    """A printable UTF-8 file name (non-ASCII kept) no longer than max_bytes, extension kept.

    Names from the inbox may hold bytes that are not UTF-8 (decoded with surrogateescape) or
    control characters; paths travel in JSON, so they must be valid UTF-8 text.
    """
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(c if c.isprintable() and c not in "/\\\ufffd" else "_" for c in text)
    text = text.strip() or "image"
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    stem, ext = os.path.splitext(text)
    ext = ext if len(ext.encode("utf-8")) <= 16 else ""
    budget = max_bytes - len(ext.encode("utf-8"))
    stem_bytes = stem.encode("utf-8")[:budget]
    return stem_bytes.decode("utf-8", "ignore") + ext


def safe_relpath(rel: str) -> str:
    """An inbox-relative path as printable UTF-8 with "/" separators (for JSON and logs)."""
    return "/".join(safe_name(part, 255) for part in rel.split(os.sep))
