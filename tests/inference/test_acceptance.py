"""The golden-sample gate: the shipped model passes its acceptance set on the device path; a model
or configuration that flips a verdict is refused (REQUIRE), let through with an alert (WARN), or
not checked (OFF)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shared.messages import Alert, ImageEvent
from vqi_inference import acceptance, settings
from vqi_inference import model as M
from vqi_inference.service import Service

from .helpers import blind_model
from .localrt import INFERENCE, THING, LocalRuntime, recipe_configuration

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "components" / "model"
SAMPLES = SHIPPED / "samples"
ALERTS = "vqi/alerts"


@pytest.fixture(scope="module")
def shipped() -> M.LoadedModel:
    return M.load(str(SHIPPED), M.SessionSettings(intra_op_threads=1))


@pytest.fixture(scope="module")
def blind(tmp_path_factory: pytest.TempPathFactory) -> M.LoadedModel:
    folder = blind_model(tmp_path_factory.mktemp("blind"))
    return M.load(str(folder), M.SessionSettings(intra_op_threads=1))


@pytest.fixture
def gated():
    """The IPC server holding the recipe's own configuration (AcceptancePolicy REQUIRE)."""
    rt = LocalRuntime(configuration=recipe_configuration())
    yield rt
    rt.close()


def service(rt: LocalRuntime, model: M.LoadedModel, folder: Path | None = SAMPLES,
            **overrides: object) -> Service:
    if overrides:
        rt.server.update_configuration(INFERENCE, [], dict(overrides))
    ipc = rt.client(INFERENCE)
    return Service(ipc, model, settings.parse(ipc.get_configuration()), THING,
                   str(folder) if folder else None)


def alerts(rt: LocalRuntime, count: int) -> list[Alert]:
    return [Alert.from_dict(m) for m in rt.collector.wait(ALERTS, count, timeout=10)]


def test_the_shipped_model_passes_its_acceptance_set(gated: LocalRuntime, shipped) -> None:
    svc = service(gated, shipped)
    report = svc.gate(svc.effective, "start")
    assert report is not None and report.passed and report.samples == 10


def test_a_model_that_flips_verdicts_is_refused_before_its_first_image(
        gated: LocalRuntime, blind, assert_valid_message) -> None:
    obs = gated.observer(ALERTS, "vqi/results")
    svc = service(gated, blind)
    with pytest.raises(acceptance.AcceptanceError, match="fails 6 of 10 acceptance samples"):
        svc.start()
    (alert,) = alerts(gated, 1)
    assert_valid_message("alert.schema.json", gated.collector.messages[ALERTS][0])
    assert (alert.kind, alert.state, alert.details["policy"]) == ("acceptance", "RAISED",
                                                                  "REQUIRE")
    assert alert.details["failed"] == 6 and alert.model.sha256 == blind.spec.sha256
    assert all("expected DEFECT, got OK" in f for f in alert.details["failures"])
    cloud = gated.cloud_messages()
    assert [c["topic"] for c in cloud] == [f"vqi/{THING}/alerts"]
    obs.publish_json("vqi/images", ImageEvent(image_id="x", path=str(SAMPLES / "good_01.jpg"),
                                              size=0, camera_id="c", capture_time="").to_dict())
    assert gated.collector.wait("vqi/results", 1, timeout=1.0) == []  # it never subscribed


def test_warn_lets_the_same_model_through_with_an_alert(gated: LocalRuntime, blind) -> None:
    gated.observer(ALERTS)
    svc = service(gated, blind, AcceptancePolicy="WARN")
    svc.start()
    try:
        (alert,) = alerts(gated, 1)
        assert alert.state == "WARNING" and "used anyway" in alert.message
    finally:
        svc.stop()


def test_off_does_not_run_the_set(gated: LocalRuntime, blind) -> None:
    svc = service(gated, blind, AcceptancePolicy="OFF")
    assert svc.gate(svc.effective, "start") is None


def test_a_live_update_that_flips_verdicts_is_refused_and_the_previous_stays(
        gated: LocalRuntime, shipped) -> None:
    gated.observer(ALERTS)
    svc = service(gated, shipped)
    raw = {**recipe_configuration(), "ConfidenceThreshold": 0.999}
    with pytest.raises(acceptance.AcceptanceError, match="configuration update is refused"):
        svc.reconfigure(raw)
    assert svc.effective.config.confidence == -1.0
    assert alerts(gated, 1)[0].details["trigger"] == "configuration"
    svc.reconfigure({**recipe_configuration(), "ConfidenceThreshold": 0.3})  # still passes
    assert svc.effective.config.confidence == 0.3


def test_require_without_an_acceptance_set_refuses_to_start(gated: LocalRuntime, shipped,
                                                            tmp_path: Path) -> None:
    svc = service(gated, shipped, folder=tmp_path)
    with pytest.raises(acceptance.AcceptanceError, match="expected.json is missing"):
        svc.start()


@pytest.mark.parametrize(("images", "words"), [
    ({"a.jpg": [[10, 10, 5, 20]]}, "has no area"),
    ({"../a.jpg": []}, "must be a file name"),
    ({"missing.jpg": []}, "the image is missing"),
    ({"a.jpg": {"verdict": "MAYBE"}}, "expected a list of boxes"),
    ({"a.jpg": {"verdict": "OK", "boxes": [[0, 0, 5, 5]]}}, "cannot have boxes"),
])
def test_a_malformed_expected_json_is_a_clear_error(tmp_path: Path, images: dict,
                                                    words: str) -> None:
    shutil.copy(SAMPLES / "good_01.jpg", tmp_path / "a.jpg")
    (tmp_path / "expected.json").write_text(json.dumps({"images": images}))
    with pytest.raises(acceptance.AcceptanceError, match=words):
        acceptance.load(str(tmp_path))


def test_a_box_in_the_wrong_place_fails_even_with_the_right_verdict(gated: LocalRuntime, shipped,
                                                                    tmp_path: Path) -> None:
    shutil.copy(SAMPLES / "defective_01.jpg", tmp_path / "d.jpg")
    (tmp_path / "expected.json").write_text(json.dumps(
        {"box_iou": 0.5, "images": {"d.jpg": [[0, 0, 20, 20]]}}))
    svc = service(gated, shipped, folder=tmp_path, AcceptancePolicy="WARN")
    report = svc.gate(svc.effective, "start")
    assert report is not None and not report.passed
    assert "no detection overlaps an expected box" in report.failures[0]
