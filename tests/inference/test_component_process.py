"""The component as a real process on the local runtime, driven by the real SDK client."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Optional

import pytest

from shared.messages import ImageEvent

from .helpers import DEMO_MODEL, ROOT, textured_image, write_image
from .localrt import INFERENCE, LocalRuntime

RESULTS = "vqi/results"
# The interpreter the component runs under; point it at a venv made from the component's
# requirements.txt on another Python (3.9 to 3.12) to check that version for real.
COMPONENT_PYTHON = os.environ.get("VQI_COMPONENT_PYTHON", sys.executable)


def model_dir(dev_model_dir: Path) -> Path:
    """The demo model when it is built (what ships), otherwise the test model."""
    return DEMO_MODEL if (DEMO_MODEL / "model.onnx").is_file() else dev_model_dir


class Component:
    def __init__(self, rt: LocalRuntime, model: Optional[Path], log: Path) -> None:
        env = dict(os.environ)
        env.update(rt.server.ipc_env(INFERENCE))
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "components" / "inference"), str(ROOT)])
        env.pop("VQI_MODEL_DIR", None)
        if model is not None:
            env["VQI_MODEL_DIR"] = str(model)
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([COMPONENT_PYTHON, "-m", "vqi_inference"], env=env,
                                     stdout=self._fh, stderr=subprocess.STDOUT, cwd=str(rt.dir))

    def wait_state(self, rt: LocalRuntime, state: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if rt.server.component_state(INFERENCE) == state:
                return True
            if self.proc.poll() is not None:
                return rt.server.component_state(INFERENCE) == state
            time.sleep(0.05)
        return False

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def make_mixed(folder: Path, count: int) -> Dict[str, Path]:
    """image id -> file; every fourth image is bad in one of several ways."""
    folder.mkdir()
    seeds = [textured_image(180 + 40 * (i % 5), 240 + 60 * (i % 3), seed=i) for i in range(10)]
    good = write_image(folder / "template.jpg", seeds[0]).read_bytes()
    files: Dict[str, Path] = {}
    for i in range(count):
        image_id = f"img-{i:04d}"
        kind = i % 4 == 3 and (i // 4) % 5
        if kind is False:
            suffix = (".jpg", ".png", ".bmp")[i % 3]
            path = write_image(folder / f"{image_id}{suffix}", seeds[i % 10])
        else:
            path = folder / f"{image_id}.jpg"
            if kind == 0:
                path.write_bytes(b"")  # empty
            elif kind == 1:
                path.write_bytes(good[: len(good) // 3])  # truncated
            elif kind == 2:
                path.write_text("camera firmware log\n" * 20)  # not an image
            elif kind == 3:
                path.write_bytes(bytes(range(256)) * 40)  # random bytes
            # kind == 4: never written (missing file)
        files[image_id] = path
    return files


@pytest.mark.timeout(240)
def test_200_mixed_images_get_exactly_one_result_each(
        runtime: LocalRuntime, dev_model_dir: Path, tmp_path: Path, assert_valid_result) -> None:
    files = make_mixed(tmp_path / "inbox", 200)
    component = Component(runtime, model_dir(dev_model_dir), tmp_path / "component.log")
    try:
        assert component.wait_state(runtime, "RUNNING"), component.output()
        observer = runtime.observer(RESULTS)
        for image_id, path in files.items():
            event = ImageEvent(image_id=image_id, path=str(path), size=0, camera_id="cam-7",
                               capture_time="")
            observer.publish_json("vqi/images", event.to_dict())
        results = runtime.collector.wait(RESULTS, len(files), timeout=180)
        # Positive marker: its result comes after anything the 200 could still add.
        marker = ImageEvent(image_id="zz-marker", path=str(next(iter(files.values()))), size=0,
                            camera_id="cam-7", capture_time="")
        observer.publish_json("vqi/images", marker.to_dict())
        deadline = time.monotonic() + 60
        while not any(r["image_id"] == "zz-marker" for r in runtime.collector.on(RESULTS)):
            assert time.monotonic() < deadline, component.output()[-3000:]
            time.sleep(0.05)
        results = [r for r in runtime.collector.on(RESULTS) if r["image_id"] != "zz-marker"]
    finally:
        code = component.stop()
    per_id = Counter(r["image_id"] for r in results)
    assert set(per_id) == set(files) and set(per_id.values()) == {1}, component.output()[-3000:]
    for message in results:
        assert_valid_result(message)
    verdicts = Counter(r["verdict"] for r in results)
    bad = [i for i in files if int(i[4:]) % 4 == 3]
    assert verdicts["ERROR"] == len(bad) == 50
    assert {r["image_id"] for r in results if r["verdict"] == "ERROR"} == set(bad)
    assert code == 0, component.output()[-3000:]


def _expect_errored(runtime: LocalRuntime, model: Optional[Path], tmp_path: Path) -> str:
    component = Component(runtime, model, tmp_path / "component.log")
    try:
        component.proc.wait(60)
    finally:
        code = component.stop()
    assert code != 0
    assert runtime.server.component_state(INFERENCE) == "ERRORED"
    return component.output()


@pytest.mark.timeout(90)
def test_tampered_model_reports_errored_and_exits(runtime: LocalRuntime, dev_model_dir: Path,
                                                  tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(dev_model_dir, model)
    data = bytearray((model / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model / "model.onnx").write_bytes(bytes(data))
    output = _expect_errored(runtime, model, tmp_path)
    assert "does not match model.json: sha256" in output


@pytest.mark.timeout(90)
def test_missing_model_reports_errored_and_exits(runtime: LocalRuntime, tmp_path: Path) -> None:
    output = _expect_errored(runtime, tmp_path / "nowhere", tmp_path)
    assert "model metadata not found" in output


@pytest.mark.timeout(90)
def test_unset_model_dir_reports_errored_and_exits(runtime: LocalRuntime, tmp_path: Path) -> None:
    output = _expect_errored(runtime, None, tmp_path)
    assert "VQI_MODEL_DIR is not set" in output


