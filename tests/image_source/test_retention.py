"""Retention keeps done/failed/quarantine within age and size, oldest first, with reasons."""

from __future__ import annotations

import time
from pathlib import Path

from vqi_image_source.retention import prune


def fill(root: Path, count: int, size: int) -> list:
    paths = []
    for i in range(count):
        day = root / "2026-01-01"
        day.mkdir(parents=True, exist_ok=True)
        image = day / f"img{i}.jpg"
        image.write_bytes(b"x" * size)
        (day / f"img{i}.jpg.reason.json").write_text("{}")
        paths.append(image)
        time.sleep(0.02)  # distinct arrival times
    return paths


def test_entries_older_than_the_limit_are_removed_with_their_reason(tmp_path: Path) -> None:
    fill(tmp_path, 3, 100)
    pruned = prune(str(tmp_path), max_age_s=3600, max_bytes=0, wall=time.time() + 7200)
    assert pruned.files == 6 and pruned.remaining_files == 0
    assert list(tmp_path.iterdir()) == []  # empty day folders go too


def test_young_entries_stay(tmp_path: Path) -> None:
    fill(tmp_path, 3, 100)
    pruned = prune(str(tmp_path), max_age_s=3600, max_bytes=0, wall=time.time())
    assert pruned.files == 0 and pruned.remaining_files == 3


def test_size_limit_removes_the_oldest_first(tmp_path: Path) -> None:
    paths = fill(tmp_path, 5, 1000)
    pruned = prune(str(tmp_path), max_age_s=0, max_bytes=2500, wall=time.time())
    assert [p.exists() for p in paths] == [False, False, False, True, True]
    assert pruned.remaining_bytes <= 2500
    assert not Path(str(paths[0]) + ".reason.json").exists()
    assert Path(str(paths[4]) + ".reason.json").exists()


def test_zero_limits_keep_everything(tmp_path: Path) -> None:
    fill(tmp_path, 2, 10)
    assert prune(str(tmp_path), 0, 0, time.time() + 10**9).files == 0
