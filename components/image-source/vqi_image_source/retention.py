"""Retention for done/, failed/ and quarantine/: by age, then by total size, oldest first.

Age counts from when the entry arrived in the folder (inode change time, which a rename sets),
not from capture, so a backlog of old images is not deleted the moment it is processed. An image
and its `.reason.json` are one unit.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Dict, List, Tuple

from .durable import REASON_SUFFIX


@dataclass(frozen=True)
class Pruned:
    files: int
    bytes: int
    remaining_files: int
    remaining_bytes: int


def _units(root: str) -> Dict[str, List[Tuple[str, int, float]]]:
    """Entries grouped by image (reason file joined to its image): key -> [(path, size, age)]."""
    units: Dict[str, List[Tuple[str, int, float]]] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
                continue
            key = entry.path[: -len(REASON_SUFFIX)] if entry.path.endswith(REASON_SUFFIX) \
                else entry.path
            units.setdefault(key, []).append((entry.path, st.st_size, max(st.st_ctime,
                                                                             st.st_mtime)))
    return units


def prune(root: str, max_age_s: float, max_bytes: int, wall: float) -> Pruned:
    """Delete what is older than max_age_s, then the oldest until under max_bytes (0 = no limit)."""
    units = _units(root)
    ordered = sorted(units.items(), key=lambda kv: max(t for _, _, t in kv[1]))
    total = sum(size for parts in units.values() for _, size, _ in parts)
    removed_files = removed_bytes = 0
    remaining = len(ordered)
    for _, parts in ordered:
        newest = max(t for _, _, t in parts)
        too_old = max_age_s > 0 and wall - newest > max_age_s
        too_big = max_bytes > 0 and total > max_bytes
        if not (too_old or too_big):
            break  # oldest first: nothing later is older, and the size is within the limit
        for path, size, _ in parts:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            removed_files += 1
            removed_bytes += size
            total -= size
        remaining -= 1
    _remove_empty_folders(root)
    return Pruned(removed_files, removed_bytes, remaining, total)


def _remove_empty_folders(root: str) -> None:
    for folder, _, _ in os.walk(root, topdown=False):
        if folder != root:
            try:
                os.rmdir(folder)  # fails unless empty (children are visited first)
            except OSError:
                pass
