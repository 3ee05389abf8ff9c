"""The real component process over the local IPC server, with a real SDK client as the pipeline."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path

import pytest

from .helpers import jpeg_bytes, write_file
from .rig import MARKER, NAME, Rig


def names(paths: list) -> list:
    return sorted(p.name.split("__", 1)[1] for p in paths if not p.name.endswith(MARKER))


def events_before_marker(rig: Rig) -> list:
    return [e for e in rig.pipeline.snapshot() if not e["path"].endswith(MARKER)]


@pytest.mark.timeout(180)
def test_burst_of_1000_images_gives_1000_events_and_no_duplicates() -> None:
    with Rig() as rig:
        rig.component.start().wait_running()
        written = []
        for i in range(1000):
            write_file(rig.inbox / f"burst-{i:04d}.jpg", jpeg_bytes(300, seed=i))
            written.append(f"burst-{i:04d}.jpg")
        rig.wait_for(lambda: len(rig.images("done")) == 1000, 150, "1000 images in done/")
        rig.settle()  # nothing more may arrive once all are acknowledged
        events = events_before_marker(rig)
        ids = [e["image_id"] for e in events]
        assert len(ids) == len(set(ids)) == 1000
        assert names(rig.images("done")) == written
        assert rig.folder("processing") == [] and rig.folder("inbox") == []
        for event in events[:5]:
            assert event["schema_version"] == 1 and event["attempt"] == 1
            assert event["camera_id"] == "camera" and event["size"] == 306


@pytest.mark.timeout(60)
@pytest.mark.parametrize("reopen", [False, True], ids=["kept-open", "reopened-per-chunk"])
def test_file_written_slowly_over_2_seconds_is_published_once_complete(reopen: bool) -> None:
    with Rig({"StabilitySeconds": 3, "RescanSeconds": 1}) as rig:
        rig.component.start().wait_running()
        data = jpeg_bytes(100_000, seed=7)
        path = rig.inbox / "slow.jpg"
        chunks = [data[i:i + 10_000] for i in range(0, len(data), 10_000)]
        f = open(path, "wb")
        for n, chunk in enumerate(chunks):
            if n:
                time.sleep(2.0 / (len(chunks) - 1))
            if reopen:
                f = open(path, "ab")
            f.write(chunk)
            f.flush()
            if reopen:
                f.close()
        f.close()
        closed_at = time.time()
        rig.wait_for(lambda: len(rig.images("done")) == 1, 15, "the slow image in done/")
        rig.settle()
        [event] = events_before_marker(rig)
        assert rig.pipeline.arrivals[0] >= closed_at
        assert event["size"] == len(data)
        [done] = [p for p in rig.images("done") if not p.name.endswith(MARKER)]
        assert done.read_bytes() == data


@pytest.mark.timeout(240)
def test_sigkill_at_random_moments_during_a_burst_loses_nothing() -> None:
    rng = random.Random(int(os.environ.get("VQI_KILL_SEED", "6")))
    count = 400
    with Rig({"MaxInFlight": 16}) as rig:
        rig.component.start().wait_running()

        def camera() -> None:
            for i in range(count):
                write_file(rig.inbox / f"k-{i:04d}.jpg", jpeg_bytes(500, seed=i))
                if i % 40 == 0:
                    time.sleep(0.05)

        writer = threading.Thread(target=camera)
        writer.start()
        kills = 0
        while kills < 5:
            time.sleep(rng.uniform(0.05, 0.4))
            rig.wait_for(lambda: bool(rig.folder("processing")), 30, "claimed images")
            time.sleep(rng.uniform(0.0, 0.05))  # kill while images are claimed and in flight
            rig.component.kill()
            kills += 1
            rig.component.start().wait_running()
        writer.join()
        rig.wait_for(lambda: len(rig.images("done")) == count, 150, "every image in done/")
        rig.settle()
        expected = [f"k-{i:04d}.jpg" for i in range(count)]
        assert names(rig.images("done")) == expected  # none lost, none twice
        assert rig.folder("processing") == [] and rig.folder("inbox") == []
        assert rig.folder("failed") == [] and rig.folder("quarantine") == []
        events = events_before_marker(rig)
        assert len({e["image_id"] for e in events}) == count  # re-published under the same id
        assert any(e["attempt"] > 1 for e in events)  # restarts did re-publish claimed images
        by_id = {}
        for event in events:
            by_id.setdefault(event["image_id"], set()).add(event["path"])
        assert all(len(paths) == 1 for paths in by_id.values())


@pytest.mark.timeout(60)
def test_links_and_non_images_are_quarantined_and_non_ascii_names_work(tmp_path: Path) -> None:
    with Rig() as rig:
        rig.component.start().wait_running()
        secret = write_file(tmp_path / "secret" / "passwd.jpg", jpeg_bytes())
        (rig.inbox / "link.jpg").symlink_to(secret)
        (rig.inbox / "cam2").mkdir()
        (rig.inbox / "cam2" / "escape").symlink_to(secret.parent)
        write_file(rig.inbox / "cam2" / "notes.jpg", b"plain text, named like an image")
        write_file(rig.inbox / "cam2" / "prüfteil_検査.png",
                   b"\x89PNG\r\n\x1a\n" + b"\0" * 50 + b"\0\0\0\0IEND\xaeB`\x82")
        rig.wait_for(lambda: len(rig.folder("quarantine")) == 6 and rig.images("done"), 20,
                     "3 quarantined entries with reasons and the non-ASCII PNG done")
        reasons = {}
        for p in rig.work.joinpath("quarantine").rglob("*.reason.json"):
            record = json.loads(p.read_text())
            reasons[record["source"]] = record["reason"]
        assert set(reasons) == {"link.jpg", "cam2/escape", "cam2/notes.jpg"}
        assert reasons["link.jpg"].startswith("symbolic link")
        assert reasons["cam2/escape"].startswith("symbolic link")
        assert reasons["cam2/notes.jpg"].startswith("not an image")
        assert secret.read_bytes() == jpeg_bytes()  # the target is never touched
        [event] = rig.pipeline.snapshot()
        assert event["camera_id"] == "cam2" and event["path"].endswith("__prüfteil_検査.png")
        assert names(rig.images("done")) == ["prüfteil_検査.png"]


@pytest.mark.timeout(60)
def test_error_verdict_lands_in_failed_with_reason() -> None:
    with Rig() as rig:
        rig.pipeline.verdict = lambda e: "ERROR"
        rig.component.start().wait_running()
        write_file(rig.inbox / "broken.jpg", jpeg_bytes())
        rig.wait_for(lambda: len(rig.folder("failed")) == 2, 20, "image + reason in failed/")
        reason = next(rig.work.joinpath("failed").rglob("*.reason.json"))
        assert json.loads(reason.read_text())["reason"] == "inspection error: decode: not decodable"


@pytest.mark.timeout(60)
def test_completion_topic_switches_live_to_results_when_there_is_no_uploader() -> None:
    with Rig(answer=False) as rig:
        rig.component.start().wait_running()
        write_file(rig.inbox / "a.jpg", jpeg_bytes())
        rig.wait_for(lambda: bool(rig.pipeline.snapshot()), 20, "the image event")
        rig.server.update_configuration(NAME, [], {"CompletionTopic": "vqi/results"})
        rig.wait_for(lambda: "listening on vqi/results" in rig.component.log.read_text(), 20,
                     "the subscription to the new completion topic")
        event = rig.pipeline.snapshot()[0]
        result = {"schema_version": 1, "image_id": event["image_id"], "path": event["path"],
                  "verdict": "DEFECT", "time": "2026-01-01T00:00:00.000Z"}
        from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

        rig.server.add_component("test.Inference", {}, {"aws.greengrass.ipc.pubsub": {"i:1": {
            "operations": ["aws.greengrass#PublishToTopic"], "resources": ["vqi/results"]}}})
        import awsiot.greengrasscoreipc as gg
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        env = rig.server.ipc_env("test.Inference")
        client = GreengrassCoreIPCClientV2(client=gg.connect(
            ipc_socket=env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"],
            authtoken=env["SVCUID"]))
        try:
            client.publish_to_topic(topic="vqi/results", publish_message=PublishMessage(
                json_message=JsonMessage(message=result)))
            rig.wait_for(lambda: len(rig.images("done")) == 1, 20, "done via vqi/results")
        finally:
            client.close()


@pytest.mark.timeout(60)
def test_bad_configuration_stops_with_errored_state_naming_the_key() -> None:
    with Rig({"MaxInFlight": -3, "InboxDir": "relative"}) as rig:
        rig.component.start()
        assert rig.component.proc is not None
        assert rig.component.proc.wait(timeout=30) == 1
        assert rig.server.component_state(NAME) == "ERRORED"
        log = rig.component.tail()
        assert "MaxInFlight" in log and "InboxDir" in log


@pytest.mark.timeout(60)
def test_metrics_are_published_on_the_metrics_topic(assert_valid_metrics) -> None:
    with Rig({"MetricsIntervalSeconds": 1}) as rig:
        rig.component.start().wait_running()
        for i in range(5):
            write_file(rig.inbox / f"m{i}.jpg", jpeg_bytes(seed=i))
        rig.wait_for(lambda: any(m.get("totals", {}).get("done") == 5
                                 for m in rig.pipeline.metrics), 20, "metrics with 5 done")
        message = rig.pipeline.metrics[-1]
        assert message["component"] == NAME and message["schema_version"] == 1
        assert {"in_flight", "inbox_ready", "inbox_to_event_ms"} <= set(message)
        for each in rig.pipeline.metrics:
            assert_valid_metrics(each)
        assert sum(m["counts"].get("done", 0) for m in rig.pipeline.metrics) == 5


@pytest.mark.timeout(60)
def test_a_completion_topic_the_recipe_does_not_allow_is_a_clear_start_error() -> None:
    with Rig({"CompletionTopic": "vqi/elsewhere"}) as rig:
        rig.component.start()
        assert rig.component.proc is not None
        assert rig.component.proc.wait(timeout=30) == 1
        assert rig.server.component_state(NAME) == "ERRORED"
        assert "cannot subscribe to vqi/elsewhere" in rig.component.tail()
        assert "accessControl" in rig.component.tail()


@pytest.mark.timeout(60)
def test_an_invalid_live_update_is_rejected_and_the_component_keeps_working() -> None:
    with Rig() as rig:
        rig.component.start().wait_running()
        rig.server.update_configuration(NAME, [], {"MaxInFlight": 0, "DoneAction": "shred"})
        rig.wait_for(lambda: "configuration update rejected" in rig.component.tail(), 10,
                     "the rejection in the log")
        assert "MaxInFlight" in rig.component.tail() and "DoneAction" in rig.component.tail()
        write_file(rig.inbox / "after.jpg", jpeg_bytes())
        rig.wait_for(lambda: len(rig.images("done")) == 1, 20, "the image done")
        assert rig.component.proc is not None and rig.component.proc.poll() is None
