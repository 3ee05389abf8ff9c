"""Champion/challenger: a challenger scores live images silently; only the champion acts; the
window's agreement goes out with the metrics and disagreements become review messages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.messages import ChallengerDisagreement, Detection, ImageEvent, InspectionResult
from vqi_inference import model as M
from vqi_inference import settings
from vqi_inference.challenger import compare
from vqi_inference.service import Service

from .helpers import blind_model
from .localrt import INFERENCE, THING, LocalRuntime, recipe_configuration

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "components" / "model"
SAMPLES = SHIPPED / "samples"
IMAGES = sorted(SAMPLES.glob("*.jpg"))


def load(folder: Path) -> M.LoadedModel:
    return M.load(str(folder), M.SessionSettings(intra_op_threads=1))


@pytest.fixture(scope="module")
def blind(tmp_path_factory: pytest.TempPathFactory) -> M.LoadedModel:
    return load(blind_model(tmp_path_factory.mktemp("blind")))


@pytest.fixture
def rig(tmp_path: Path):
    rt = LocalRuntime(configuration={**recipe_configuration(), "MetricsIntervalSeconds": 3600})
    observer = rt.observer("vqi/results", "vqi/challenger", "vqi/alerts")
    made = []

    def start(challenger: M.LoadedModel, **overrides: object) -> Service:
        if overrides:
            rt.server.update_configuration(INFERENCE, [], dict(overrides))
        ipc = rt.client(INFERENCE)
        service = Service(ipc, load(SHIPPED), settings.parse(ipc.get_configuration()), THING,
                          str(SAMPLES), challenger=challenger, work_dir=str(tmp_path / "work"))
        service.start()
        made.append(service)
        return service

    def feed(service: Service) -> None:
        """The samples one at a time, each scored by the challenger before the next."""
        for i, path in enumerate(IMAGES):
            observer.publish_json("vqi/images", ImageEvent(
                image_id=f"img-{i}", path=str(path), size=0, camera_id="c",
                capture_time="").to_dict())
            assert len(rt.collector.wait("vqi/results", i + 1, timeout=30)) == i + 1
            deadline = time.monotonic() + 30
            while service.challenger.tally.images < i + 1 and time.monotonic() < deadline:
                time.sleep(0.01)

    yield rt, start, feed
    for service in made:
        service.stop()
    rt.close()


def test_a_challenger_identical_to_the_champion_agrees_completely(
        rig, assert_valid_metrics) -> None:
    rt, start, feed = rig
    service = start(load(SHIPPED))
    feed(service)
    message = service._publish_metrics()
    assert_valid_metrics(message)
    window = message["challenger"]
    assert window["images"] == len(IMAGES) and window["skipped"] == 0
    assert window["verdict_agreement"] == 1.0 and window["detection_agreement"] == 1.0
    assert window["disagreements"] == 0 and window["score_delta"]["max"] == 0.0
    assert window["model"]["sha256"] == service.model.spec.sha256
    assert rt.collector.wait("vqi/challenger", 1, timeout=0.5) == []
    cloud = [m for m in rt.cloud_messages() if m["topic"] == f"vqi/{THING}/challenger"]
    assert cloud and cloud[-1]["payload"]["challenger"]["images"] == len(IMAGES)


def test_only_the_champion_acts_and_each_disagreement_is_sent_with_both_results(
        rig, blind, assert_valid_message) -> None:
    rt, start, feed = rig
    service = start(blind, AcceptancePolicy="WARN")  # the blind one fails the gate: kept, warned
    feed(service)
    verdicts = {r["image_id"]: r["verdict"] for r in rt.collector.messages["vqi/results"]}
    assert sorted(verdicts.values()).count("DEFECT") == 6  # the champion's verdicts
    raw = rt.collector.wait("vqi/challenger", 6, timeout=10)
    for message in raw:
        assert_valid_message("challenger-disagreement.schema.json", message)
    sent = [ChallengerDisagreement.from_dict(m) for m in raw]
    assert len(sent) == 6
    for item in sent:
        assert item.champion["verdict"] == "DEFECT" and item.challenger["verdict"] == "OK"
        assert item.challenger["model"]["version"] == "9.0.0-blind"
        assert Path(item.image_path).is_file() and Path(item.image_path).parent.name == \
            "disagreements"
    window = service._publish_metrics()["challenger"]
    assert window["verdict_agreement"] == 0.4 and window["disagreements"] == 6
    assert any(a["kind"] == "acceptance" and a["state"] == "WARNING"
               and a["details"]["role"] == "challenger"
               for a in rt.collector.messages["vqi/alerts"])


def test_a_challenger_that_fails_the_gate_under_require_is_not_used(rig, blind) -> None:
    rt, start, _ = rig
    service = start(blind)
    assert service.challenger is None
    alerts = [(a["kind"], a["state"]) for a in rt.collector.wait("vqi/alerts", 2, timeout=10)]
    assert ("acceptance", "RAISED") in alerts and ("challenger", "WARNING") in alerts


def test_at_rate_zero_nothing_is_scored_and_no_image_is_kept(rig) -> None:
    rt, start, _ = rig
    service = start(load(SHIPPED), ChallengerSampleRate=0.0)
    assert service._limits().keep_image is False


def detection(box, score, name="scratch") -> Detection:
    return Detection(0, name, score, list(box), [0.0, 0.0, 0.1, 0.1])


def result(verdict, *dets) -> InspectionResult:
    return InspectionResult(image_id="x", path="/x", verdict=verdict, detections=list(dets))


def test_detections_are_matched_per_class_at_iou_half() -> None:
    champion = result("DEFECT", detection((0, 0, 10, 10), 0.9), detection((50, 50, 60, 60), 0.4))
    challenger = result("DEFECT", detection((1, 1, 10, 10), 0.8), detection((80, 80, 90, 90), 0.3))
    cmp = compare(champion, challenger)
    assert cmp.verdict_agrees and not cmp.agrees
    assert cmp.per_class == {"scratch": (1, 1, 1)}
    assert cmp.score_deltas == (pytest.approx(-0.1),)
