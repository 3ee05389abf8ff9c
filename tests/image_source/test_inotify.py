"""shared.inotify reports finished files by name, including names that are not UTF-8."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vqi_image_source import inotify


def test_close_write_and_moved_to_are_reported_with_their_names(tmp_path: Path) -> None:
    with inotify.Inotify() as ino:
        wd = ino.add_watch(str(tmp_path), inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO)
        (tmp_path / "a.jpg").write_bytes(b"x")
        (tmp_path / "b.part").write_bytes(b"y")
        os.rename(tmp_path / "b.part", tmp_path / "b.jpg")
        raw = os.path.join(os.fsencode(str(tmp_path)), b"c\xff.jpg")
        with open(raw, "wb") as f:
            f.write(b"z")
        events = ino.read(timeout=2.0)
    seen = [(e.wd, e.name, bool(e.mask & inotify.IN_MOVED_TO)) for e in events]
    assert (wd, "a.jpg", False) in seen
    assert (wd, "b.jpg", True) in seen
    assert (wd, os.fsdecode(b"c\xff.jpg"), False) in seen
    assert ino.paths == {wd: str(tmp_path)}


def test_read_waits_no_longer_than_its_timeout(tmp_path: Path) -> None:
    with inotify.Inotify() as ino:
        ino.add_watch(str(tmp_path), inotify.IN_CLOSE_WRITE)
        assert ino.read(timeout=0.05) == []


def test_watching_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with inotify.Inotify() as ino, pytest.raises(inotify.InotifyError, match="missing"):
        ino.add_watch(str(tmp_path / "missing"), inotify.IN_CLOSE_WRITE)
