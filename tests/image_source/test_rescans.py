"""Rescans, the safety net under inotify: after the kernel's event queue overflowed, and on a
system without inotify. Real folders and the real kernel queue; the clock is the test's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vqi_image_source import inotify, watcher
from vqi_image_source.layout import Layout
from vqi_image_source.service import Service

from .helpers import Collector, jpeg_bytes, make_settings, write_file


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def start(work: Path, clock: Clock) -> "tuple[Service, Collector]":
    settings = make_settings(StabilitySeconds=0, RescanSeconds=3600)
    publish = Collector()
    service = Service(settings, Layout.resolve(settings, {"VQI_WORK_DIR": str(work)}), publish,
                      clock=clock, sync=False)
    service.start()
    return service, publish


def overflow_the_event_queue(folder: Path) -> None:
    """More distinct events than the kernel queues (fs.inotify.max_queued_events), left unread.
    The files are gone again, so only their events remain."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    for n in range(limit // 2 + 100):  # IN_CREATE + IN_CLOSE_WRITE each
        path = folder / f"noise-{n}.tmp"
        path.write_bytes(b"")
        os.unlink(path)


def turns(service: Service, n: int) -> None:
    for _ in range(n):
        service.run_once(0.01)


@pytest.mark.timeout(60)
def test_a_file_whose_event_was_lost_in_an_overflow_is_found_by_the_rescan_it_triggers(
        work: Path) -> None:
    clock = Clock()
    service, publish = start(work, clock)  # the periodic rescan is an hour away
    inbox = Path(service.layout.inbox)
    overflow_the_event_queue(inbox)
    write_file(inbox / "lost-event.jpg", jpeg_bytes(seed=3))  # queue full: no event for it
    turns(service, 5)
    assert [e["path"].endswith("lost-event.jpg") for e in publish.events()] == [True]
    service.close()


@pytest.mark.timeout(30)
def test_the_watcher_reports_an_overflow_as_a_needed_rescan(tmp_path: Path) -> None:
    watch = watcher.Watcher(str(tmp_path), lambda name: False)
    list(watch.walk())
    overflow_the_event_queue(tmp_path)
    lost = False
    for _ in range(100):
        _, overflowed = watch.read(0.0)
        lost = lost or overflowed
    watch.close()
    assert lost


@pytest.mark.timeout(30)
def test_without_inotify_files_are_found_by_the_periodic_rescan(
        work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A kernel without inotify cannot be had here without starving every other process of
    # inotify instances, so inotify_init failing is the one stand-in in this file.
    def unavailable() -> inotify.Inotify:
        raise inotify.InotifyError(38, "inotify_init1 failed: Function not implemented")

    monkeypatch.setattr(watcher.inotify, "Inotify", unavailable)
    clock = Clock()
    service, publish = start(work, clock)
    assert service.gauges()["inotify"] is False
    write_file(Path(service.layout.inbox) / "polled.jpg", jpeg_bytes(seed=4))
    turns(service, 3)
    assert publish.events() == []  # nothing tells the service before the next rescan
    clock.now += 3600
    turns(service, 3)
    assert [e["path"].endswith("polled.jpg") for e in publish.events()] == [True]
    service.close()
