"""Power-cut safety of the real component process, read from its system calls (strace): the
claim sidecar that carries an image's id, camera and attempt count must be on disk (fsync)
before it is renamed into place, or a power cut could leave an image with no usable claim."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from .. import syscalls
from .helpers import jpeg_bytes, write_file
from .rig import Rig

pytestmark = pytest.mark.skipif(
    syscalls.STRACE is None, reason="strace is not installed (./scripts/test installs it as root)")


@pytest.mark.timeout(120)
def test_each_claim_sidecar_is_fsynced_before_it_is_renamed_into_place(tmp_path: Path) -> None:
    trace = tmp_path / "strace.txt"
    with Rig({"StabilitySeconds": 0.2}) as rig:
        rig.component.start(prefix=syscalls.prefix(trace)).wait_running(60)
        for n in range(3):
            write_file(rig.inbox / f"img{n}.jpg", jpeg_bytes(seed=n))
        rig.wait_for(lambda: len(rig.images("done")) == 3, 60, "three images in done/")
        child = syscalls.first_child(rig.component.proc.pid)
        assert child is not None
        os.kill(child, signal.SIGTERM)  # the component, not strace (which would detach)
        rig.component.proc.wait(timeout=30)
    calls = syscalls.parse(trace)
    sidecars = syscalls.renames(calls, ".claim.json")
    assert len(sidecars) >= 3, "no claim sidecar was written"
    unsynced = [(src, dst) for i, src, dst in sidecars
                if not syscalls.fsynced_before(calls, src, i)]
    assert unsynced == [], f"sidecars renamed into place without an fsync first: {unsynced}"
