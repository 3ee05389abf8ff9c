"""Images are served only from inside the configured folders, never through a symlink."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from vqi_dashboard import images


def layout(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    (root / "processing").mkdir(parents=True)
    return Path(os.path.realpath(root))


def test_found_in_processing_then_in_its_done_day(tmp_path: Path) -> None:
    root = layout(tmp_path)
    name = "id__a.jpg"
    (root / "processing" / name).write_bytes(b"1")
    assert images.find(f"/elsewhere/processing/{name}", time.time(), [str(root)]) == (
        str(root / "processing" / name), "image/jpeg")
    (root / "processing" / name).unlink()
    day = root / "done" / "2026-03-04"
    day.mkdir(parents=True)
    (day / name).write_bytes(b"2")
    found = images.find(name, time.time(), [str(root)])  # looked up in every day folder
    assert found is not None and found[0] == str(day / name)


def test_unknown_types_and_odd_names_are_not_looked_up(tmp_path: Path) -> None:
    root = layout(tmp_path)
    (root / "processing" / "notes.txt").write_text("x")
    for recorded in ("/x/notes.txt", "/x/..", "", "/x/"):
        assert images.find(recorded, time.time(), [str(root)]) is None


def test_a_symlinked_file_or_folder_is_refused(tmp_path: Path) -> None:
    root = layout(tmp_path)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"secret")
    os.symlink(outside, root / "processing" / "a.jpg")
    os.symlink(tmp_path, root / "done")
    (tmp_path / "2026-01-01").mkdir()
    (tmp_path / "2026-01-01" / "b.jpg").write_bytes(b"secret")
    assert images.find("a.jpg", time.time(), [str(root)]) is None
    assert images.find("b.jpg", time.time(), [str(root)]) is None


def test_read_refuses_a_symlink_swapped_in_after_find(tmp_path: Path) -> None:
    root = layout(tmp_path)
    target = root / "processing" / "t.jpg"
    target.write_bytes(b"x")
    link = root / "processing" / "l.jpg"
    os.symlink(target, link)
    with pytest.raises(OSError):
        images.read(str(link), [str(root)])
    assert images.read(str(target), [str(root)]) == b"x"


def test_read_refuses_a_folder_swapped_for_a_symlink_after_find(tmp_path: Path) -> None:
    root = layout(tmp_path)
    day = root / "done" / "2026-03-04"
    day.mkdir(parents=True)
    (day / "a.jpg").write_bytes(b"mine")
    found = images.find("a.jpg", time.time(), [str(root)])
    assert found is not None
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.jpg").write_bytes(b"secret")
    (day / "a.jpg").unlink()
    day.rmdir()
    os.symlink(outside, day)  # the day folder now leads out of the root
    with pytest.raises(OSError, match="outside"):
        images.read(found[0], [str(root)])


def test_read_never_waits_on_a_fifo(tmp_path: Path) -> None:
    root = layout(tmp_path)
    fifo = root / "processing" / "f.jpg"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        images.read(str(fifo), [str(root)])


def test_read_refuses_more_than_the_limit(tmp_path: Path) -> None:
    root = layout(tmp_path)
    big = root / "processing" / "big.jpg"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(OSError, match="larger"):
        images.read(str(big), [str(root)], limit=1000)
