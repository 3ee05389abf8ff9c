"""When an inbox file is taken: complete (closed with trailer) or stable; never temp names."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import List

from vqi_image_source.intake import QUARANTINE, Intake

from .helpers import jpeg_bytes, make_layout, make_settings, write_file

S = 2.0  # StabilitySeconds in these tests
INCOMPLETE = 10.0  # IncompleteSeconds in these tests


def intake_for(work: Path, **overrides: object) -> Intake:
    settings = make_settings(**{"StabilitySeconds": S, "IncompleteSeconds": INCOMPLETE,
                                **overrides})
    return Intake(make_layout(work, settings).inbox, settings)


def ready_paths(intake: Intake, now: float) -> List[str]:
    out = []
    while True:
        c = intake.pop_ready(now)
        if c is None:
            return out
        out.append(c.path)


def test_closed_complete_image_is_ready_at_once(work: Path) -> None:
    intake = intake_for(work)
    path = str(write_file(Path(intake.inbox) / "a.jpg", jpeg_bytes()))
    intake.observe(path, closed=True, now=100.0)
    assert intake.evaluate(100.0, time.time()) == []
    assert ready_paths(intake, 100.0) == [path]


def test_unclosed_fresh_file_waits_for_stability(work: Path) -> None:
    intake = intake_for(work)
    path = str(write_file(Path(intake.inbox) / "a.jpg", jpeg_bytes()))
    wall = time.time()
    intake.observe(path, closed=False, now=100.0)
    intake.evaluate(100.0 + S - 0.1, wall)
    assert ready_paths(intake, 100.0) == []
    intake.evaluate(100.0 + S, wall)
    assert ready_paths(intake, 100.0 + S) == [path]


def test_old_file_found_by_rescan_is_ready_at_once(work: Path) -> None:
    intake = intake_for(work)
    path = str(write_file(Path(intake.inbox) / "old.jpg", jpeg_bytes()))
    os.utime(path, (time.time() - 60, time.time() - 60))
    intake.observe(path, closed=False, now=100.0)
    intake.evaluate(100.0, time.time())
    assert ready_paths(intake, 100.0) == [path]


def test_growing_file_is_not_taken_until_it_stops_changing(work: Path) -> None:
    intake = intake_for(work)
    path = Path(intake.inbox) / "slow.tif"
    path.write_bytes(b"II*\x00" + b"\1" * 100)
    intake.observe(str(path), closed=False, now=100.0)
    for step in range(1, 5):  # keeps growing every second: never stable
        with open(path, "ab") as f:
            f.write(b"\2" * 100)
        intake.evaluate(100.0 + step, time.time())
        assert ready_paths(intake, 100.0 + step) == []
    intake.evaluate(104.0 + S, time.time() + S)
    assert ready_paths(intake, 104.0 + S) == [str(path)]


def test_truncated_jpeg_waits_the_incomplete_window_then_is_quarantined(work: Path) -> None:
    intake = intake_for(work)
    path = str(write_file(Path(intake.inbox) / "cut.jpg", jpeg_bytes()[:500]))
    wall = time.time()
    intake.observe(path, closed=True, now=100.0)
    assert intake.evaluate(100.0, wall) == []
    assert intake.evaluate(100.0 + S, wall) == []  # a slow writer may still add the rest
    [(where, decision)] = intake.evaluate(100.0 + INCOMPLETE, wall + INCOMPLETE)
    assert where == path and decision.verdict == QUARANTINE
    assert "incomplete jpeg" in decision.reason and "IncompleteSeconds" in decision.reason


def test_a_file_open_for_writing_is_never_judged_within_the_window(work: Path) -> None:
    intake = intake_for(work)
    path = str(write_file(Path(intake.inbox) / "open.jpg", jpeg_bytes()))  # looks complete
    wall = time.time()
    intake.observe(path, closed=False, now=100.0, writing=True)
    assert intake.evaluate(100.0 + S, wall + S) == []
    assert ready_paths(intake, 100.0 + S) == []  # the writer may append or rewrite it
    intake.observe(path, closed=True, now=101.0 + S)  # IN_CLOSE_WRITE
    intake.evaluate(101.0 + S, wall + S)
    assert ready_paths(intake, 101.0 + S) == [path]


def test_a_writer_that_never_closes_is_judged_after_the_incomplete_window(work: Path) -> None:
    intake = intake_for(work)
    path = str(write_file(Path(intake.inbox) / "stuck.jpg", jpeg_bytes()))
    wall = time.time()
    intake.observe(path, closed=False, now=100.0, writing=True)
    intake.evaluate(100.0 + INCOMPLETE - 0.1, wall)
    assert ready_paths(intake, 100.0) == []
    intake.evaluate(100.0 + INCOMPLETE, wall + INCOMPLETE)
    assert ready_paths(intake, 100.0 + INCOMPLETE) == [path]


def test_a_ready_file_reopened_for_writing_goes_back_to_waiting(work: Path) -> None:
    intake = intake_for(work)
    path = str(write_file(Path(intake.inbox) / "again.jpg", jpeg_bytes()))
    intake.observe(path, closed=True, now=100.0)
    intake.evaluate(100.0, time.time())
    intake.observe(path, closed=False, now=100.5, writing=True)  # truncate and rewrite begins
    assert ready_paths(intake, 100.5) == []


def test_non_image_and_oversize_and_empty_are_rejected_with_reasons(work: Path) -> None:
    intake = intake_for(work, MaxFileBytes=10_000)
    inbox = Path(intake.inbox)
    text = str(write_file(inbox / "notes.jpg", b"just some text"))
    big = str(write_file(inbox / "big.jpg", jpeg_bytes(20_000)))
    empty = str(write_file(inbox / "empty.jpg", b""))
    for p in (text, big, empty):
        intake.observe(p, closed=True, now=100.0)
    reasons = dict((p, d.reason) for p, d in intake.evaluate(100.0 + S, time.time() + S))
    assert reasons[text].startswith("not an image: magic bytes 6a 75 73 74")
    assert "over MaxFileBytes" in reasons[big]
    assert empty not in reasons  # a writer may not have written its first byte yet
    later = dict((p, d.reason) for p, d in intake.evaluate(100.0 + INCOMPLETE,
                                                          time.time() + INCOMPLETE))
    assert later[empty] == f"empty file, unchanged for {INCOMPLETE:g} s"


def test_symlinks_and_fifos_are_rejected_at_once(work: Path, tmp_path: Path) -> None:
    intake = intake_for(work)
    inbox = Path(intake.inbox)
    (inbox / "link.jpg").symlink_to(write_file(tmp_path / "outside.jpg", jpeg_bytes()))
    os.mkfifo(inbox / "pipe.jpg")
    link = intake.observe(str(inbox / "link.jpg"), closed=False, now=1.0)
    fifo = intake.observe(str(inbox / "pipe.jpg"), closed=False, now=1.0)
    assert link is not None and link.verdict == QUARANTINE and "symbolic link" in link.reason
    assert str(tmp_path / "outside.jpg") in link.reason
    assert fifo is not None and "not a regular file" in fifo.reason


def test_temporary_and_hidden_names_are_ignored(work: Path) -> None:
    intake = intake_for(work, IncludePatterns=["*.jpg", "*.png"])
    inbox = Path(intake.inbox)
    for name in ("a.jpg.part", "b.tmp", ".c.jpg", ".staging/d.jpg", "e.txt", "F.JPG"):
        write_file(inbox / name, jpeg_bytes())
        intake.observe(str(inbox / name), closed=True, now=1.0)
    intake.evaluate(1.0, time.time())
    assert ready_paths(intake, 1.0) == [str(inbox / "F.JPG")]


def test_ready_files_leave_oldest_first(work: Path) -> None:
    intake = intake_for(work)
    inbox = Path(intake.inbox)
    paths = [str(write_file(inbox / f"{n}.jpg", jpeg_bytes(seed=n))) for n in range(3)]
    for age, p in zip((10, 30, 20), paths):
        os.utime(p, (time.time() - age, time.time() - age))
        intake.observe(p, closed=True, now=1.0)
    intake.evaluate(1.0, time.time())
    assert ready_paths(intake, 1.0) == [paths[1], paths[2], paths[0]]


def test_ready_file_rewritten_before_its_claim_goes_back_to_waiting(work: Path) -> None:
    intake = intake_for(work)
    path = write_file(Path(intake.inbox) / "a.jpg", jpeg_bytes())
    intake.observe(str(path), closed=True, now=1.0)
    intake.evaluate(1.0, time.time())
    with open(path, "ab") as f:  # writer reopened it: trailer no longer last
        f.write(b"\0" * 5000)
    assert intake.pop_ready(1.5) is None
    assert intake.pending == 1


def test_a_path_that_resolves_outside_the_inbox_is_never_taken(work: Path,
                                                               tmp_path: Path) -> None:
    intake = intake_for(work)
    outside = write_file(tmp_path / "outside" / "x.jpg", jpeg_bytes())
    (Path(intake.inbox) / "cam").symlink_to(outside.parent)  # e.g. a watched folder swapped
    assert intake.observe(str(Path(intake.inbox) / "cam" / "x.jpg"), True, 1.0) is None
    assert not intake.tracked(str(Path(intake.inbox) / "cam" / "x.jpg"))
    intake.evaluate(1.0, time.time())
    assert intake.pop_ready(1.0) is None and outside.exists()
    (outside.parent / "link.jpg").symlink_to(outside)  # a link out there is not ours either
    assert intake.observe(str(Path(intake.inbox) / "cam" / "link.jpg"), False, 1.0) is None


def test_a_pending_file_whose_folder_became_a_file_is_dropped(work: Path) -> None:
    intake = intake_for(work)
    path = write_file(Path(intake.inbox) / "cam" / "a.jpg", jpeg_bytes()[:500])
    intake.observe(str(path), closed=False, now=1.0)
    path.unlink()
    path.parent.rmdir()
    path.parent.write_bytes(b"cam is a file now")
    assert intake.evaluate(1.0 + S, time.time()) == []
    assert intake.pending == 0


def test_a_pending_file_whose_folder_now_resolves_outside_is_not_quarantined(
        work: Path, tmp_path: Path) -> None:
    # Without inotify (rescans only) a swapped-in folder link can live for seconds: the file
    # found through it belongs to someone else and must not be moved to quarantine.
    intake = intake_for(work)
    inbox = Path(intake.inbox)
    path = write_file(inbox / "cam" / "notes.jpg", b"not finished yet")
    intake.observe(str(path), closed=False, now=1.0)
    outside = write_file(tmp_path / "elsewhere" / "notes.jpg", b"someone else's notes")
    os.rename(inbox / "cam", tmp_path / "old-cam")
    (inbox / "cam").symlink_to(outside.parent)
    assert intake.evaluate(1.0 + S, time.time() + S) == []
    assert not intake.tracked(str(path))
