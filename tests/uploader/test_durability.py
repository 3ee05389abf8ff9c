"""Power-cut safety of the real uploader process, read from its system calls (strace): a review
image's staged link must be on disk before the result is confirmed, because ImageSource may then
delete its own copy (DoneAction delete)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterator

import pytest

from .. import syscalls
from .rig import Rig, make_result

pytestmark = pytest.mark.skipif(
    syscalls.STRACE is None, reason="strace is not installed (./scripts/test installs it as root)")


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    made = Rig(tmp_path, monkeypatch, {"OkSampleRate": 0.0})
    try:
        yield made
    finally:
        made.close()


@pytest.mark.timeout(120)
def test_staged_review_images_are_on_disk_before_their_result_is_confirmed(rig: Rig,
                                                                          tmp_path: Path):
    trace = tmp_path / "strace.txt"
    rig.start_sm()
    rig.start_uploader(prefix=syscalls.prefix(trace))
    rig.connect_peer()
    results = [make_result(f"d-{n}", rig.image(f"d-{n}"), "DEFECT", [0.9]) for n in range(3)]
    rig.redeliver_until_confirmed(results, timeout=60)
    child = syscalls.first_child(rig.proc.pid)
    assert child is not None
    os.kill(child, signal.SIGTERM)  # the uploader itself; strace would only detach
    rig.proc.wait(30)
    rig.proc = None
    calls = syscalls.parse(trace)
    staging = str(rig.work / "staging")
    staged = [(i, dst) for i, _src, dst in syscalls.renames(calls, ".jpg")
              if dst.startswith(staging)]
    assert len(staged) >= 3, "no review image was staged"
    for index, target in staged:
        folder = os.path.dirname(target)
        later = [c for c in calls[index:] if c.name == "fsync" and c.paths == (folder,)]
        assert later, f"{folder} was not fsynced after {target} was linked into it"
