"""shared.atomic: a file is replaced whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.atomic import unlink_quietly, write_atomic


def test_write_atomic_replaces_the_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    write_atomic(str(target), "néw")
    assert target.read_text(encoding="utf-8") == "néw"
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("x")  # a non-empty folder cannot be replaced by a file
    with pytest.raises(OSError):
        write_atomic(str(target), b"data")
    assert sorted(os.listdir(tmp_path)) == ["taken"] and (target / "inside").exists()


def test_a_name_near_the_length_limit_still_works(tmp_path: Path) -> None:
    target = tmp_path / ("n" * 250)
    write_atomic(str(target), b"ok", sync=False)
    assert target.read_bytes() == b"ok"


def test_unlink_quietly_says_whether_it_removed_something(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    assert unlink_quietly(str(path)) is True and unlink_quietly(str(path)) is False
