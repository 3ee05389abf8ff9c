"""Drift and process alarms: a darkened camera, a blurred lens and a burst of defects each raise
their alarm on the alerts topic, and it clears when the line is normal again."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from shared.messages import ImageEvent
from vqi_inference import drift, settings
from vqi_inference import model as M
from vqi_inference.imagestats import ImageStats, measure
from vqi_inference.service import Service
from vqitools.model.reference import reference_stats
from vqitools.model.synth import SynthConfig, render, write_sample

from .localrt import INFERENCE, THING, LocalRuntime, recipe_configuration

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "components" / "model"
ALERTS, RESULTS = "vqi/alerts", "vqi/results"
WINDOW = 20


def tags(folder: Path, seed: int, defective: int, good: int) -> list[Path]:
    """Synthetic tags like the model's validation images: `defective` with scratches first."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg, paths, index = SynthConfig(), [], 0
    while len(paths) < defective:
        img, boxes = render(seed, "val", index, cfg)
        index += 1
        if boxes:
            paths.append(folder / f"d{index:03d}.jpg")
            write_sample(paths[-1], img, cfg)
    for _ in range(good):
        img, _ = render(seed, "val", index, cfg, paint_scratches=False)
        index += 1
        paths.append(folder / f"g{index:03d}.jpg")
        write_sample(paths[-1], img, cfg)
    return paths


def altered(paths: list[Path], folder: Path, change) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        out.append(folder / path.name)
        cv2.imwrite(str(out[-1]), change(cv2.imread(str(path))))
    return out


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory):
    """The shipped model with a reference from 40 tags (a quarter defective), and the images of
    one normal window (same share, other tags), a dark one, a blurred one and a burst."""
    base = tmp_path_factory.mktemp("drift")
    model_dir = base / "model"
    model_dir.mkdir()
    for name in ("model.onnx", "model.json"):
        shutil.copy(SHIPPED / name, model_dir / name)
    ref = reference_stats(model_dir, tags(base / "ref", 11, 10, 30))
    meta = json.loads((model_dir / "model.json").read_text())
    meta["reference"] = ref
    (model_dir / "model.json").write_text(json.dumps(meta))
    normal = tags(base / "normal", 12, 5, 15)
    return {
        "model": M.load(str(model_dir), M.SessionSettings(intra_op_threads=1)),
        "normal": normal,
        "dark": altered(normal, base / "dark", lambda im: (im * 0.3).astype(np.uint8)),
        "blurred": altered(normal, base / "blur", lambda im: cv2.GaussianBlur(im, (0, 0), 4)),
        "burst": tags(base / "burst", 13, WINDOW, 0),
    }


@pytest.fixture
def served(line, assert_valid_message):
    rt = LocalRuntime(configuration={**recipe_configuration(), "AcceptancePolicy": "OFF",
                                     "DriftWindowImages": WINDOW, "AlertMinIntervalSeconds": 0})
    ipc = rt.client(INFERENCE)
    service = Service(ipc, line["model"], settings.parse(ipc.get_configuration()), THING)
    service.start()
    observer = rt.observer(ALERTS, RESULTS)
    sent = [0]

    def window(paths: list[Path], expect: tuple[str, str] | None = None) -> list[tuple[str, str]]:
        """One window of images; the (kind, state) alerts it caused (waiting up to 10 s for
        `expect`, else half a second: alerts follow the window's last result)."""
        before = len(rt.collector.messages.get(ALERTS, []))
        for path in paths:
            observer.publish_json("vqi/images", ImageEvent(
                image_id=f"{sent[0]}", path=str(path), size=0, camera_id="c",
                capture_time="").to_dict())
            sent[0] += 1
        assert len(rt.collector.wait(RESULTS, sent[0], timeout=60)) == sent[0]
        deadline = time.monotonic() + (10.0 if expect else 0.5)
        while True:
            got = [(a["kind"], a["state"])
                   for a in list(rt.collector.messages.get(ALERTS, []))[before:]]
            if (expect in got) or time.monotonic() > deadline:
                for alert in list(rt.collector.messages.get(ALERTS, []))[before:]:
                    assert_valid_message("alert.schema.json", alert)
                return got
            time.sleep(0.05)

    yield window
    service.stop()
    rt.close()


def test_a_normal_window_raises_nothing(served, line) -> None:
    assert served(line["normal"]) == []


@pytest.mark.parametrize(("images", "kind"), [("dark", "brightness"), ("dark", "contrast"),
                                             ("blurred", "sharpness"), ("burst", "defect_rate"),
                                             ("burst", "score_shift")])
def test_an_abnormal_window_raises_its_alarm_and_a_normal_one_clears_it(served, line, images,
                                                                         kind) -> None:
    assert served(line["normal"]) == []
    assert (kind, "RAISED") in served(line[images], expect=(kind, "RAISED"))
    assert (kind, "CLEARED") in served(line["normal"], expect=(kind, "CLEARED"))


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    ref = drift.histogram([0.0] * 25 + [0.85] * 75, drift.SCORE_BINS)
    assert drift.psi(ref, ref) == 0.0
    assert drift.psi(ref, drift.histogram([0.0] * 75 + [0.85] * 25, drift.SCORE_BINS)) > 1.0


def test_p_chart_limits_are_three_sigma_around_the_expected_rate() -> None:
    low, high = drift.p_chart_limits(0.25, 100, 3.0)
    assert (round(low, 4), round(high, 4)) == (0.1201, 0.3799)


def test_an_alarm_is_raised_once_and_a_change_waits_for_the_minimum_interval() -> None:
    ref = drift.Reference.from_json(drift.reference_from(
        ["OK"] * 30 + ["DEFECT"] * 10, [0.0] * 30 + [0.9] * 10,
        [ImageStats(100.0 + i % 5, 50.0, 300.0) for i in range(40)]))
    now = [0.0]
    monitor = drift.DriftMonitor(ref, drift.DriftSettings(window=10, min_interval_s=60),
                                 clock=lambda: now[0])
    dark = ImageStats(20.0, 50.0, 300.0)
    normal = ImageStats(101.0, 50.0, 300.0)

    def window(stats: ImageStats) -> list[tuple[str, str]]:
        changes = []
        for i in range(10):
            verdict = "DEFECT" if i < 2 else "OK"
            changes += monitor.observe(verdict, 0.9 if i < 2 else 0.0, stats)
        return [(f.kind, state) for state, f in changes]

    assert window(dark) == [("brightness", "RAISED")]
    assert window(dark) == []  # still dark: no second message
    now[0] = 30.0
    assert window(normal) == []  # too soon after the alarm: judged again next window
    now[0] = 61.0
    assert window(normal) == [("brightness", "CLEARED")]


def test_stats_are_measured_on_a_shrunk_copy_and_see_blur() -> None:
    img = cv2.imread(str(SHIPPED / "samples" / "defective_01.jpg"))
    sharp, blurred = measure(img), measure(cv2.GaussianBlur(img, (0, 0), 3))
    assert blurred.sharpness < sharp.sharpness / 5
    big = measure(cv2.resize(img, (1920, 1920)))
    assert abs(big.brightness - sharp.brightness) < 1.0


def test_a_reference_without_its_fields_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="reference is incomplete"):
        drift.Reference.from_json({"images": 3})
