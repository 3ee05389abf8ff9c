"""Slow and odd camera writers, with the recipe's default StabilitySeconds and IncompleteSeconds:
real files, real inotify, writers in threads pausing longer than StabilitySeconds."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Callable, List

import pytest

from vqi_image_source.layout import Layout
from vqi_image_source.service import Service

from .helpers import Collector, jpeg_bytes, make_settings, result_for

DEFAULTS = {"StabilitySeconds": 3, "IncompleteSeconds": 60}  # as in the recipe
PAUSE_S = 5.0  # longer than StabilitySeconds, as an FTP/SMB upload that stalls


def start(work: Path) -> "tuple[Service, Collector]":
    settings = make_settings(**DEFAULTS)
    publish = Collector()
    service = Service(settings, Layout.resolve(settings, {"VQI_WORK_DIR": str(work)}), publish,
                      sync=False)
    service.start()
    return service, publish


def run_while(service: Service, writer: threading.Thread, then: Callable[[], bool],
              timeout: float = 40.0) -> None:
    """Run the service loop while the writer works, then until `then` holds."""
    deadline = time.monotonic() + timeout
    while writer.is_alive() or not then():
        assert time.monotonic() < deadline, "timed out"
        service.run_once(0.05)


def quarantined(service: Service) -> List[Path]:
    return [p for p in Path(service.layout.quarantine).rglob("*") if p.is_file()]


def claimed_sha(service: Service) -> List[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest()
            for p in Path(service.layout.processing).rglob("*")
            if p.is_file() and not p.name.endswith(".json")]


def in_chunks(data: bytes, parts: int) -> List[bytes]:
    step = len(data) // parts + 1
    return [data[i:i + step] for i in range(0, len(data), step)]


@pytest.mark.timeout(90)
def test_a_writer_that_keeps_the_file_open_and_pauses_is_waited_for(work: Path) -> None:
    service, publish = start(work)
    image = jpeg_bytes(50_000, seed=1)
    path = Path(service.layout.inbox) / "slow.jpg"

    def write() -> None:
        with open(path, "wb") as handle:  # one open, three chunks, pauses in between
            for chunk in in_chunks(image, 3):
                handle.write(chunk)
                handle.flush()
                time.sleep(PAUSE_S)

    writer = threading.Thread(target=write)
    writer.start()
    run_while(service, writer, lambda: len(publish.events()) == 1)
    writer.join()
    assert quarantined(service) == []
    assert claimed_sha(service) == [hashlib.sha256(image).hexdigest()]
    service.close()


@pytest.mark.timeout(90)
def test_a_writer_that_reopens_the_file_for_each_chunk_is_waited_for(work: Path) -> None:
    service, publish = start(work)
    image = jpeg_bytes(50_000, seed=2)
    path = Path(service.layout.inbox) / "resumed.jpg"

    def write() -> None:  # an FTP client resuming: append, close, pause, append again
        for chunk in in_chunks(image, 3):
            with open(path, "ab") as handle:
                handle.write(chunk)
            time.sleep(PAUSE_S)

    writer = threading.Thread(target=write)
    writer.start()
    run_while(service, writer, lambda: len(publish.events()) == 1)
    assert quarantined(service) == []
    assert claimed_sha(service) == [hashlib.sha256(image).hexdigest()]
    service.close()


@pytest.mark.timeout(90)
def test_a_writer_that_truncates_and_rewrites_gives_one_image_of_the_final_bytes(
        work: Path) -> None:
    service, publish = start(work)
    first, final = jpeg_bytes(40_000, seed=3), jpeg_bytes(60_000, seed=4)
    path = Path(service.layout.inbox) / "rewritten.jpg"

    def write() -> None:
        with open(path, "wb") as handle:
            handle.write(first[:20_000])
            handle.flush()
            time.sleep(PAUSE_S)
            handle.seek(0)
            handle.truncate()  # start again, e.g. after a transfer error
            handle.write(final[:30_000])
            handle.flush()
            time.sleep(PAUSE_S)
            handle.write(final[30_000:])

    writer = threading.Thread(target=write)
    writer.start()
    run_while(service, writer, lambda: len(publish.events()) == 1)
    time.sleep(0.5)
    service.run_once(0.1)
    assert len(publish.events()) == 1 and quarantined(service) == []
    assert claimed_sha(service) == [hashlib.sha256(final).hexdigest()]
    service.close()


@pytest.mark.timeout(60)
def test_write_then_rename_is_taken_at_once(work: Path) -> None:
    service, publish = start(work)
    inbox = Path(service.layout.inbox)
    (inbox / "shot.jpg.part").write_bytes(jpeg_bytes(seed=5))
    os.rename(inbox / "shot.jpg.part", inbox / "shot.jpg")
    started = time.monotonic()
    while not publish.events():
        service.run_once(0.05)
    assert time.monotonic() - started < DEFAULTS["StabilitySeconds"]  # not waiting for stability
    service.close()


@pytest.mark.timeout(60)
def test_a_name_the_camera_reuses_later_is_a_second_image(work: Path) -> None:
    service, publish = start(work)
    inbox = Path(service.layout.inbox)
    for n in (1, 2):
        (inbox / "cam.jpg.part").write_bytes(jpeg_bytes(seed=10 + n))
        os.rename(inbox / "cam.jpg.part", inbox / "cam.jpg")
        deadline = time.monotonic() + 20
        while len(publish.events()) < n:
            assert time.monotonic() < deadline
            service.run_once(0.05)
        service.submit_completion(result_for(publish.events()[-1]), "vqi/archived")
        while service.in_flight:
            service.run_once(0.05)
    first, second = publish.events()
    assert first["image_id"] != second["image_id"]
    assert [p.name.split("__", 1)[1] for p in Path(service.layout.done).rglob("*.jpg")] == \
        ["cam.jpg", "cam.jpg"]
    service.close()
