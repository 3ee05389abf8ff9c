"""The service core without IPC: real folders, real inotify, a recording publisher."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import pytest

from vqi_image_source.layout import Layout, LayoutError
from vqi_image_source.service import Service
from vqi_image_source.settings import parse

from .helpers import Collector, jpeg_bytes, make_settings, result_for, write_file


def start(work: Path, **overrides: object) -> "tuple[Service, Collector]":
    settings = make_settings(**overrides)
    layout = Layout.resolve(settings, {"VQI_WORK_DIR": str(work)})
    publish = Collector()
    service = Service(settings, layout, publish, sync=False)
    service.start()
    return service, publish


def run_until(service: Service, done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        service.run_once(0.05)


def files(folder: str) -> list:
    return sorted(p.name for p in Path(folder).rglob("*") if p.is_symlink() or not p.is_dir())


@pytest.mark.timeout(60)
def test_burst_is_published_once_each_within_the_in_flight_limit(work: Path) -> None:
    service, publish = start(work, MaxInFlight=4)
    inbox = Path(service.layout.inbox)
    for i in range(200):
        write_file(inbox / f"img{i:04d}.jpg", jpeg_bytes(seed=i))
    answered = set()
    deadline = time.monotonic() + 30
    while len(files(service.layout.done)) < 200:
        assert time.monotonic() < deadline
        service.run_once(0.05)
        assert len(service.in_flight) <= 4
        for event in publish.events():
            if event["image_id"] not in answered:
                answered.add(event["image_id"])
                service.submit_completion(result_for(event), "vqi/archived")
    ids = [e["image_id"] for e in publish.events()]
    assert len(ids) == len(set(ids)) == 200
    assert files(service.layout.processing) == [] and files(service.layout.inbox) == []
    service.close()


@pytest.mark.timeout(30)
def test_error_verdict_sends_the_image_to_failed_with_the_reason(work: Path) -> None:
    service, publish = start(work)
    write_file(Path(service.layout.inbox) / "bad.jpg", jpeg_bytes())
    run_until(service, lambda: bool(publish.events()))
    [event] = publish.events()
    service.submit_completion(result_for(event, "ERROR", "decode: corrupt data"), "vqi/archived")
    run_until(service, lambda: not service.in_flight)
    [image, reason] = sorted(Path(service.layout.failed).rglob("*"))[1:]  # [day folder, ...]
    assert image.name.endswith("__bad.jpg")
    record = json.loads(Path(str(image) + ".reason.json").read_text())
    assert record["reason"] == "inspection error: decode: corrupt data"
    assert record["image_id"] == event["image_id"]
    service.close()


@pytest.mark.timeout(30)
def test_late_result_means_republish_with_the_same_id_and_next_attempt(work: Path) -> None:
    service, publish = start(work, ResultTimeoutSeconds=1)
    write_file(Path(service.layout.inbox) / "a.jpg", jpeg_bytes())
    run_until(service, lambda: len(publish.events()) >= 2, timeout=5)
    first, second = publish.events()[:2]
    assert second["image_id"] == first["image_id"] and second["path"] == first["path"]
    assert (first["attempt"], second["attempt"]) == (1, 2)
    service.close()


@pytest.mark.timeout(30)
def test_an_outage_never_fails_images_but_a_poison_image_does(work: Path) -> None:
    service, publish = start(work, ResultTimeoutSeconds=1, MaxAttempts=2, MaxInFlight=2)
    inbox = Path(service.layout.inbox)
    write_file(inbox / "poison.jpg", jpeg_bytes(seed=1))
    run_until(service, lambda: len(publish.events()) >= 3, timeout=6)  # nobody answers
    assert files(service.layout.failed) == []  # outage: keeps retrying
    deadline = time.monotonic() + 10
    n = 0
    while not files(service.layout.failed):  # traffic resumes; all but the poison get results
        assert time.monotonic() < deadline
        n += 1
        write_file(inbox / f"fine{n}.jpg", jpeg_bytes(seed=100 + n))
        for _ in range(4):
            service.run_once(0.05)
        for event in publish.events():
            if "fine" in event["path"] and event["image_id"] in service.in_flight:
                service.submit_completion(result_for(event), "vqi/archived")
    reason = [n for n in files(service.layout.failed) if n.endswith(".reason.json")]
    assert len(reason) == 1 and "poison" in reason[0]
    text = next(Path(service.layout.failed).rglob("*.reason.json")).read_text()
    assert "no result after" in json.loads(text)["reason"]
    service.close()


@pytest.mark.timeout(30)
def test_restart_republishes_claimed_images_with_the_same_id(work: Path) -> None:
    service, publish = start(work)
    write_file(Path(service.layout.inbox) / "a.jpg", jpeg_bytes())
    run_until(service, lambda: bool(publish.events()))
    service.close()  # no result yet; like a crash after publishing
    again, publish2 = start(work)
    [event] = publish2.events()
    assert event["image_id"] == publish.events()[0]["image_id"] and event["attempt"] == 2
    again.submit_completion(result_for(event), "vqi/archived")
    run_until(again, lambda: not again.in_flight)
    assert len(files(again.layout.done)) == 1
    again.close()


@pytest.mark.timeout(30)
def test_symlinks_and_non_images_are_quarantined_with_a_reason(work: Path,
                                                                tmp_path: Path) -> None:
    service, publish = start(work)
    inbox = Path(service.layout.inbox)
    outside = write_file(tmp_path / "outside" / "real.jpg", jpeg_bytes())
    (inbox / "link.jpg").symlink_to(outside)
    (inbox / "dirlink").symlink_to(outside.parent)
    write_file(inbox / "report.jpg", b"%PDF-1.7 not an image")
    run_until(service, lambda: len(files(service.layout.quarantine)) == 6)
    reasons = {json.loads(p.read_text())["source"]: json.loads(p.read_text())["reason"]
               for p in Path(service.layout.quarantine).rglob("*.reason.json")}
    assert "symbolic link" in reasons["link.jpg"] and "symbolic link" in reasons["dirlink"]
    assert reasons["report.jpg"].startswith("not an image")
    assert outside.exists() and publish.events() == []
    service.close()


@pytest.mark.timeout(30)
def test_camera_id_comes_from_the_subfolder_or_the_configuration(work: Path) -> None:
    service, publish = start(work, CameraId="line-1")
    inbox = Path(service.layout.inbox)
    write_file(inbox / "a.jpg", jpeg_bytes(seed=1))
    (inbox / "cam-7").mkdir()
    write_file(inbox / "cam-7" / "b.jpg", jpeg_bytes(seed=2))
    run_until(service, lambda: len(publish.events()) == 2)
    cameras = {Path(e["path"]).name.split("__")[1]: e["camera_id"] for e in publish.events()}
    assert cameras == {"a.jpg": "line-1", "b.jpg": "cam-7"}
    service.close()


@pytest.mark.timeout(30)
def test_live_update_of_the_in_flight_limit(work: Path) -> None:
    service, publish = start(work, MaxInFlight=1)
    inbox = Path(service.layout.inbox)
    for i in range(3):
        write_file(inbox / f"{i}.jpg", jpeg_bytes(seed=i))
    run_until(service, lambda: len(publish.events()) == 1)
    service.run_once(0.2)
    assert len(publish.events()) == 1
    service.submit_settings(make_settings(MaxInFlight=3))
    run_until(service, lambda: len(publish.events()) == 3)
    service.close()


@pytest.mark.timeout(30)
def test_done_action_delete_removes_the_image(work: Path) -> None:
    service, publish = start(work, DoneAction="delete")
    write_file(Path(service.layout.inbox) / "a.jpg", jpeg_bytes())
    run_until(service, lambda: bool(publish.events()))
    service.submit_completion(result_for(publish.events()[0], "DEFECT"), "vqi/archived")
    run_until(service, lambda: not service.in_flight)
    assert files(service.layout.done) == [] and files(service.layout.processing) == []
    service.close()


@pytest.mark.timeout(30)
def test_messages_on_other_topics_and_bad_messages_change_nothing(work: Path) -> None:
    service, publish = start(work)
    write_file(Path(service.layout.inbox) / "a.jpg", jpeg_bytes())
    run_until(service, lambda: bool(publish.events()))
    event = publish.events()[0]
    service.submit_completion(result_for(event), "vqi/results")  # not the completion topic
    service.submit_completion({"image_id": event["image_id"]}, "vqi/archived")  # no verdict
    service.submit_completion("garbage", "vqi/archived")
    service.run_once(0.1)
    assert event["image_id"] in service.in_flight
    assert service.metrics.totals["bad_messages"] == 2
    service.close()


def test_state_folders_on_another_filesystem_are_refused(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a separate filesystem")
    state = Path(os.path.join("/dev/shm", f"vqi-test-{os.getpid()}"))
    try:
        settings = parse({"InboxDir": str(tmp_path / "inbox"), "StateDir": str(state)})
        with pytest.raises(LayoutError, match="another filesystem"):
            Layout.resolve(settings, {}).prepare()
    finally:
        import shutil
        shutil.rmtree(state, ignore_errors=True)


def test_state_folders_inside_the_inbox_are_refused(tmp_path: Path) -> None:
    settings = parse({"InboxDir": str(tmp_path / "in"), "StateDir": str(tmp_path / "in" / "s")})
    with pytest.raises(LayoutError, match="inside the inbox"):
        Layout.resolve(settings, {}).prepare()


def test_bad_configuration_names_every_bad_key() -> None:
    from shared.config import ConfigError
    with pytest.raises(ConfigError) as err:
        parse({"MaxInFlight": 0, "InboxDir": "relative/path", "DoneAction": "archive"})
    for key in ("MaxInFlight", "InboxDir", "DoneAction"):
        assert key in str(err.value)


@pytest.mark.timeout(30)
def test_files_that_arrived_while_stopped_are_found_at_start(work: Path) -> None:
    inbox = work / "inbox"
    write_file(inbox / "early.jpg", jpeg_bytes(seed=1))
    write_file(inbox / "cam-3" / "deep" / "early2.jpg", jpeg_bytes(seed=2))
    service, publish = start(work, StabilitySeconds=0.2)
    run_until(service, lambda: len(publish.events()) == 2)
    assert {e["camera_id"] for e in publish.events()} == {"camera", "cam-3"}
    service.close()


@pytest.mark.timeout(30)
def test_new_camera_subfolders_are_watched(work: Path) -> None:
    # The next rescan is an hour away, so only an inotify watch on the new folders can find it.
    service, publish = start(work, RescanSeconds=3600)
    inbox = Path(service.layout.inbox)
    (inbox / "cam-9" / "2026").mkdir(parents=True)
    service.run_once(0.1)
    write_file(inbox / "cam-9" / "2026" / "x.jpg", jpeg_bytes())
    run_until(service, lambda: bool(publish.events()))
    assert publish.events()[0]["camera_id"] == "cam-9"
    service.close()


@pytest.mark.timeout(30)
def test_a_failed_publish_is_retried_with_the_same_attempt(work: Path) -> None:
    settings = make_settings()
    calls = []

    def flaky(topic: str, message: dict) -> None:
        calls.append(message)
        if len(calls) == 1:
            raise ConnectionError("IPC hiccup")

    service = Service(settings, Layout.resolve(settings, {"VQI_WORK_DIR": str(work)}), flaky,
                      sync=False)
    service.start()
    write_file(Path(service.layout.inbox) / "a.jpg", jpeg_bytes())
    run_until(service, lambda: len(calls) == 2, timeout=5)
    assert [c["attempt"] for c in calls] == [1, 1]
    assert calls[0]["image_id"] == calls[1]["image_id"]
    assert service.metrics.totals["publish_errors"] == 1
    service.close()


@pytest.mark.timeout(30)
def test_retention_trims_done_to_its_size_limit_oldest_first(work: Path) -> None:
    day = work / "done" / "2026-01-01"
    day.mkdir(parents=True)
    for i in range(4):
        (day / f"old{i}.jpg").write_bytes(b"x" * 1000)
        time.sleep(0.02)
    service, _ = start(work, DoneMaxBytes=2500)
    service.run_once(0.01)  # retention runs on the first pass
    assert files(service.layout.done) == ["old2.jpg", "old3.jpg"]
    assert service.metrics.totals["retention_deleted"] == 2
    service.close()


@pytest.mark.timeout(60)
def test_a_backlog_larger_than_memory_tracking_waits_on_disk_and_is_all_published(
        work: Path) -> None:
    inbox = work / "inbox"
    for i in range(60):
        write_file(inbox / f"b{i:03d}.jpg", jpeg_bytes(seed=i))
    settings = make_settings(StabilitySeconds=0)
    publish = Collector()
    service = Service(settings, Layout.resolve(settings, {"VQI_WORK_DIR": str(work)}), publish,
                      sync=False, max_tracked=10)
    service.start()
    assert service.intake.pending + service.intake.ready <= 10
    answered: set = set()
    deadline = time.monotonic() + 40
    while len(files(service.layout.done)) < 60:
        assert time.monotonic() < deadline
        service.run_once(0.05)
        assert service.intake.pending + service.intake.ready <= 10
        for event in publish.events():
            if event["image_id"] not in answered:
                answered.add(event["image_id"])
                service.submit_completion(result_for(event), "vqi/archived")
    assert len(answered) == 60
    service.close()


@pytest.mark.timeout(30)
def test_live_pattern_change_stops_taking_newly_ignored_names(work: Path) -> None:
    service, publish = start(work, StabilitySeconds=30, MaxInFlight=1)
    inbox = Path(service.layout.inbox)
    for i in range(3):
        write_file(inbox / f"{i}.bmp", b"BM" + b"\0" * 30)
    run_until(service, lambda: len(publish.events()) == 1)
    service.submit_settings(make_settings(StabilitySeconds=30, MaxInFlight=5,
                                          IgnorePatterns=["*.bmp"]))
    for _ in range(5):
        service.run_once(0.05)
    assert len(publish.events()) == 1
    assert sorted(p.name for p in inbox.iterdir()) == ["1.bmp", "2.bmp"]
    service.close()


def ready(component: str = "com.example.vqi.Inference") -> dict:
    return {"schema_version": 1, "component": component, "consumes": "vqi/images",
            "instance": "0123456789abcdef", "time": "2026-12-01T00:00:00.000Z"}


@pytest.mark.timeout(30)
def test_a_consumer_ready_message_resends_everything_in_flight_at_once(work: Path) -> None:
    service, publish = start(work, ResultTimeoutSeconds=600, MaxInFlight=4)
    inbox = Path(service.layout.inbox)
    for i in range(6):
        write_file(inbox / f"img{i}.jpg", jpeg_bytes(seed=i))
    run_until(service, lambda: len(publish.events()) == 4)  # 4 in flight, 2 waiting on disk
    first = {e["image_id"] for e in publish.events()}
    service.submit_ready(ready(), "vqi/ready")
    run_until(service, lambda: len(publish.events()) == 8)
    resent = publish.events()[4:]
    assert {e["image_id"] for e in resent} == first  # the same ids: consumers stay idempotent
    assert all(e["attempt"] == 2 for e in resent)
    for event in publish.events()[:4]:  # completions then free slots for the other two
        service.submit_completion(result_for(event), "vqi/archived")
    run_until(service, lambda: len(publish.events()) == 10)
    service.close()


@pytest.mark.timeout(30)
def test_a_ready_message_is_not_a_strike_against_the_image(work: Path) -> None:
    service, publish = start(work, ResultTimeoutSeconds=600, MaxAttempts=2)
    write_file(Path(service.layout.inbox) / "a.jpg", jpeg_bytes())
    run_until(service, lambda: len(publish.events()) == 1)
    for n in range(5):  # consumers restarting again and again never fail the image
        service.submit_ready(ready(), "vqi/ready")
        run_until(service, lambda n=n: len(publish.events()) == n + 2)
    assert len(service.in_flight) == 1 and files(service.layout.failed) == []
    service.close()


@pytest.mark.timeout(30)
def test_a_malformed_ready_message_is_counted_and_ignored(work: Path) -> None:
    service, publish = start(work, ResultTimeoutSeconds=600)
    write_file(Path(service.layout.inbox) / "a.jpg", jpeg_bytes())
    run_until(service, lambda: len(publish.events()) == 1)
    service.submit_ready({"component": 3}, "vqi/ready")
    service.run_once(0.1)
    assert len(publish.events()) == 1
    assert service.metrics.totals["bad_messages"] == 1
    service.close()
