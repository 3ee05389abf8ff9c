"""The service over the real local IPC server and SDK client: results, idempotency, live config."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from shared.component import Edge
from shared.messages import ImageEvent
from vqi_inference import model as M
from vqi_inference import settings
from vqi_inference.service import Service

from .helpers import textured_image, write_image
from .localrt import INFERENCE, THING, LocalRuntime, recipe_configuration

RESULTS = "vqi/results"


@pytest.fixture(scope="module")
def loaded(dev_model_dir: Path) -> M.LoadedModel:
    return M.load(str(dev_model_dir), M.SessionSettings(intra_op_threads=1))


def start_service(rt: LocalRuntime, loaded: M.LoadedModel, **overrides: object) -> Service:
    if overrides:
        rt.server.update_configuration(INFERENCE, [], dict(overrides))
    ipc = rt.client(INFERENCE)
    config = settings.parse(ipc.get_configuration())
    service = Service(ipc, loaded, config, THING)
    service.start()
    return service


@contextmanager
def served(rt: LocalRuntime, loaded: M.LoadedModel, **overrides: object) -> Iterator[Service]:
    """The service under the component's real edge (shared.component.Edge: configuration
    updates included); leaving the block stops it as SIGTERM would."""
    if overrides:
        rt.server.update_configuration(INFERENCE, [], dict(overrides))
    edge = Edge(rt.client(INFERENCE))
    assert edge.start(lambda ipc, raw: Service(ipc, loaded, settings.parse(raw), THING))
    thread = threading.Thread(target=edge.serve, name="edge")
    thread.start()
    try:
        assert isinstance(edge.component, Service)
        yield edge.component
    finally:
        edge.request_stop()
        thread.join(30)


def event(image_id: str, path: Path) -> dict:
    return ImageEvent(image_id=image_id, path=str(path), size=0, camera_id="cam-1",
                      capture_time="").to_dict()


@pytest.mark.timeout(60)
def test_each_event_gets_a_schema_valid_result(runtime: LocalRuntime, loaded, tmp_path: Path,
                                               assert_valid_result) -> None:
    service = start_service(runtime, loaded)
    obs = runtime.observer(RESULTS)
    good = write_image(tmp_path / "g.jpg", textured_image(240, 320, 1))
    bad = tmp_path / "b.png"
    bad.write_bytes(b"nope")
    obs.publish_json("vqi/images", event("good-1", good))
    obs.publish_json("vqi/images", event("bad-1", bad))
    got = {m["image_id"]: m for m in runtime.collector.wait(RESULTS, 2)}
    service.stop()
    assert set(got) == {"good-1", "bad-1"}
    for message in got.values():
        assert_valid_result(message)
    assert got["good-1"]["verdict"] in ("OK", "DEFECT") and got["good-1"]["camera_id"] == "cam-1"
    assert got["good-1"]["image_width"] == 320 and got["good-1"]["thing_name"] == THING
    assert got["bad-1"]["verdict"] == "ERROR"
    assert got["bad-1"]["error"].startswith("not_an_image: ")


@pytest.mark.timeout(60)
def test_an_event_for_an_image_still_in_flight_is_answered_once(runtime: LocalRuntime, loaded,
                                                                tmp_path: Path) -> None:
    service = start_service(runtime, loaded)
    obs = runtime.observer(RESULTS)
    path = write_image(tmp_path / "big.png", textured_image(1600, 1600, 7))
    service.on_message(event("twice", path), "vqi/images")  # as the IPC threads would call it
    service.on_message(event("twice", path), "vqi/images")  # re-sent while the first decodes
    obs.publish_json("vqi/images", event("marker", path))
    results = runtime.collector.wait(RESULTS, 2)
    deadline = time.monotonic() + 20
    while "marker" not in [r["image_id"] for r in results] and time.monotonic() < deadline:
        results = runtime.collector.wait(RESULTS, len(results) + 1, timeout=1)
    service.stop()
    ids = [r["image_id"] for r in runtime.collector.on(RESULTS)]
    assert ids.count("twice") == 1 and "marker" in ids
    assert service.metrics.totals["duplicates"] == 1 and service.metrics.totals["images"] == 2


@pytest.mark.timeout(60)
def test_repeated_image_id_republishes_the_cached_result(runtime: LocalRuntime, loaded,
                                                          tmp_path: Path) -> None:
    service = start_service(runtime, loaded)
    obs = runtime.observer(RESULTS)
    path = write_image(tmp_path / "a.png", textured_image(200, 200, 2))
    obs.publish_json("vqi/images", event("same", path))
    first = runtime.collector.wait(RESULTS, 1)[0]
    path.unlink()  # a re-run would now fail with not_found: the answer must come from the cache
    obs.publish_json("vqi/images", event("same", path))
    both = runtime.collector.wait(RESULTS, 2)
    service.stop()
    assert len(both) == 2 and both[1] == first
    assert service.metrics.totals["images"] == 1 and service.metrics.totals["duplicates"] == 1


@pytest.mark.timeout(60)
def test_missing_file_is_retried_not_cached(runtime: LocalRuntime, loaded, tmp_path: Path) -> None:
    service = start_service(runtime, loaded)
    obs = runtime.observer(RESULTS)
    path = tmp_path / "late.png"
    obs.publish_json("vqi/images", event("late", path))
    assert runtime.collector.wait(RESULTS, 1)[0]["error"].startswith("not_found: ")
    write_image(path, textured_image(100, 100, 3))
    obs.publish_json("vqi/images", event("late", path))
    second = runtime.collector.wait(RESULTS, 2)[1]
    service.stop()
    assert second["verdict"] in ("OK", "DEFECT")


@pytest.mark.timeout(60)
def test_live_configuration_update_changes_thresholds_and_policy(
        runtime: LocalRuntime, loaded, tmp_path: Path, assert_valid_result) -> None:
    obs = runtime.observer(RESULTS)
    path = write_image(tmp_path / "a.png", textured_image(300, 300, 4))
    with served(runtime, loaded, IotCorePublishPolicy="NONE") as service:
        obs.publish_json("vqi/images", event("before", path))
        before = runtime.collector.wait(RESULTS, 1)[0]
        scores = sorted(d["score"] for d in before["detections"])
        assert len(scores) >= 2 and scores[0] < scores[-1]
        cut = round((scores[0] + scores[-1]) / 2, 4)
        runtime.server.update_configuration(
            INFERENCE, [], {"ConfidenceThreshold": cut, "IotCorePublishPolicy": "ALL"})
        deadline = time.monotonic() + 10
        while service.effective.config.confidence != cut and time.monotonic() < deadline:
            time.sleep(0.02)
        obs.publish_json("vqi/images", event("after", path))
        after = runtime.collector.wait(RESULTS, 2)[1]
    assert_valid_result(after)
    kept = [d["score"] for d in after["detections"]]
    assert kept and all(s > cut for s in kept) and len(kept) < len(scores)
    cloud = runtime.cloud_messages()
    assert [c["payload"]["image_id"] for c in cloud] == ["after"]
    assert cloud[0]["topic"] == f"vqi/{THING}/results" and cloud[0]["qos"] == 1


@pytest.mark.timeout(60)
def test_invalid_configuration_update_keeps_the_previous_one(runtime: LocalRuntime, loaded,
                                                             caplog) -> None:
    def rejected() -> bool:
        return any("configuration update rejected" in r.getMessage() for r in caplog.records)

    with caplog.at_level("ERROR"), served(runtime, loaded) as service:
        before = service.effective
        runtime.server.update_configuration(
            INFERENCE, [], {"DefectRules": [{"Classes": ["rust"]}], "MetricsIntervalSeconds": 5})
        deadline = time.monotonic() + 10
        while not rejected() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rejected() and "rust" in caplog.text
        assert service.effective is before  # rejected whole: not even the valid key applied
        runtime.server.update_configuration(INFERENCE, ["DefectRules"], [{"Classes": ["dent"]}])
        deadline = time.monotonic() + 10
        while service.effective is before and time.monotonic() < deadline:
            time.sleep(0.02)
    assert service.effective.config.metrics_interval_s == 5
    assert [sorted(r.classes) for r in service.effective.rules] == [["dent"]]


@pytest.mark.timeout(60)
def test_defects_policy_sends_only_defects_to_iot_core(runtime: LocalRuntime, loaded,
                                                       tmp_path: Path) -> None:
    # With a rule no detection can meet, everything is OK; with no rules, any detection is DEFECT.
    obs = runtime.observer(RESULTS)
    path = write_image(tmp_path / "a.png", textured_image(300, 300, 4))
    with served(runtime, loaded, IotCorePublishPolicy="DEFECTS",
                DefectRules=[{"MinScore": 1.0, "MinCount": 1000}]) as service:
        obs.publish_json("vqi/images", event("ok-one", path))
        assert runtime.collector.wait(RESULTS, 1)[0]["verdict"] == "OK"
        runtime.server.update_configuration(INFERENCE, ["DefectRules"], [])
        deadline = time.monotonic() + 10
        while service.effective.rules and time.monotonic() < deadline:
            time.sleep(0.02)
        obs.publish_json("vqi/images", event("defect-one", path))
        assert runtime.collector.wait(RESULTS, 2)[1]["verdict"] == "DEFECT"
    assert [c["payload"]["image_id"] for c in runtime.cloud_messages()] == ["defect-one"]


@pytest.mark.timeout(60)
def test_refused_iot_core_publish_is_counted_and_logged_once(runtime: LocalRuntime, loaded,
                                                             tmp_path: Path, caplog) -> None:
    # The recipe allows vqi/+/results on IoT Core; a topic outside it is refused by the nucleus.
    service = start_service(runtime, loaded, IotCorePublishPolicy="ALL",
                            IotCoreResultTopic="alerts/{thing}")
    obs = runtime.observer(RESULTS)
    path = write_image(tmp_path / "a.png", textured_image(300, 300, 4))
    with caplog.at_level("ERROR"):
        for n in range(3):
            obs.publish_json("vqi/images", event(f"img-{n}", path))
        assert len(runtime.collector.wait(RESULTS, 3)) == 3  # local results still flow
        deadline = time.monotonic() + 10
        while service.metrics.totals["iot_core_refused"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        metrics = service._publish_metrics()
    service.stop()
    assert metrics["counts"]["iot_core_refused"] == 3
    assert metrics["counts"].get("publish_failures", 0) == 0
    refusals = [r for r in caplog.records if "IoT Core refused publishing" in r.getMessage()]
    assert len(refusals) == 1 and f"alerts/{THING}" in refusals[0].getMessage()
    assert runtime.cloud_messages() == []


@pytest.mark.timeout(60)
def test_annotated_image_written_for_defects(runtime: LocalRuntime, loaded,
                                             tmp_path: Path) -> None:
    folder = tmp_path / "annotated"
    service = start_service(runtime, loaded, AnnotatedImageDir=str(folder))
    obs = runtime.observer(RESULTS)
    path = write_image(tmp_path / "a.png", textured_image(300, 400, 4))
    obs.publish_json("vqi/images", event("cam/1:defect", path))
    result = runtime.collector.wait(RESULTS, 1)[0]
    service.stop()
    assert result["verdict"] == "DEFECT"
    written = list(folder.iterdir())
    assert [p.name for p in written] == ["cam_1_defect.jpg"]
    import cv2

    assert cv2.imread(str(written[0])).shape == (300, 400, 3)


@pytest.mark.timeout(60)
def test_metrics_are_published_periodically(runtime: LocalRuntime, loaded, tmp_path: Path,
                                            assert_valid_metrics) -> None:
    service = start_service(runtime, loaded, MetricsIntervalSeconds=1)
    obs = runtime.observer(RESULTS, "vqi/metrics")
    path = write_image(tmp_path / "a.png", textured_image(100, 100, 5))
    for i in range(3):
        obs.publish_json("vqi/images", event(f"m{i}", path))
    obs.publish_json("vqi/images", {"path": "no id"})  # malformed: counted, ignored
    runtime.collector.wait(RESULTS, 3)
    deadline = time.monotonic() + 20
    while not any(m["totals"].get("images") == 3 and m["totals"].get("bad_events") == 1
                  for m in runtime.collector.on("vqi/metrics")):
        assert time.monotonic() < deadline, runtime.collector.on("vqi/metrics")
        time.sleep(0.05)
    service.stop()  # publishes the last window too
    metrics = runtime.collector.wait("vqi/metrics", len(runtime.collector.on("vqi/metrics")))
    last = [m for m in metrics if m["totals"].get("images") == 3][-1]
    assert last["totals"]["bad_events"] == 1
    assert set(last["latency_ms"]) == {"p50", "p95", "p99", "max"}
    assert sum(m["counts"].get("images", 0) for m in metrics) == 3
    for message in metrics:
        assert_valid_metrics(message)


def test_recipe_defaults_parse_and_resolve(loaded) -> None:
    config = settings.parse(recipe_configuration())
    effective = settings.resolve(config, loaded.spec)
    assert config == settings.InferenceConfig()  # recipe defaults == code defaults
    assert effective.thresholds.iou == loaded.spec.iou
