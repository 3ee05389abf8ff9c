"""The start-up warning about an inbox that a camera running as another user cannot write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vqi_image_source.inbox_access import camera_access_problem


def folder(path: Path, mode: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    return path


def test_a_group_writable_inbox_under_traversable_folders_is_fine(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    inbox = folder(folder(tmp_path / "vqi", 0o755) / "inbox", 0o2770)
    if any(not parent.stat().st_mode & 0o001 for parent in tmp_path.parents):
        pytest.skip("pytest's base folder is private (the root suite opens it; see conftest)")
    assert camera_access_problem(str(inbox)) is None


def test_an_inbox_only_its_owner_can_write_is_reported_with_the_fix(tmp_path: Path) -> None:
    inbox = folder(tmp_path / "inbox", 0o755)
    problem = camera_access_problem(str(inbox))
    assert problem and "not writable for its group" in problem and "2770" in problem


def test_an_inbox_inside_a_0700_work_folder_is_reported(tmp_path: Path) -> None:
    work = folder(tmp_path / "work", 0o700)
    inbox = folder(work / "inbox", 0o2770)
    problem = camera_access_problem(str(inbox))
    assert problem and f"{work} (drwx------)" in problem


def test_a_missing_inbox_is_reported_not_raised(tmp_path: Path) -> None:
    assert "cannot check the inbox" in camera_access_problem(str(tmp_path / "none"))
