"""The runner over this repo's real components, built by scripts/build-component in a temp copy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localgg.runtime import LocalRuntime, RuntimeOptions, read_env_file
from localgg.supervisor import RestartPolicy, State

from .lifecycle_fixtures import wait_for

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build-component"
MODEL = "com.example.vqi.Model"
INFERENCE = "com.example.vqi.Inference"

pytestmark = pytest.mark.skipif(not BUILD.exists(), reason="scripts/build-component is missing")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Copy components/ and build each one; returns (components dir, folder -> build error)."""
    components = tmp_path_factory.mktemp("real") / "components"
    errors = {}
    for source in sorted((REPO / "components").iterdir()):
        if not (source / "gdk-config.json").exists():
            continue
        target = components / source.name
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(
            "greengrass-build", "__pycache__", ".*"))
        done = subprocess.run([sys.executable, str(BUILD)], cwd=target, capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            errors[source.name] = done.stdout + done.stderr
            shutil.rmtree(target / "greengrass-build", ignore_errors=True)
    return components, errors


def require(built, *folders: str) -> Path:
    components, errors = built
    failed = {f: errors[f] for f in folders if f in errors}
    assert not failed, f"build-component failed: {failed}"
    return components


@pytest.mark.timeout(120)
def test_real_model_install_verifies_the_model(built, tmp_path) -> None:
    components = require(built, "model")
    runtime = LocalRuntime(RuntimeOptions(root=tmp_path / "ok", components_dir=components,
                                          only=[MODEL]))
    try:
        runtime.start()
        assert runtime.supervisor.wait_until(lambda s: s[MODEL].state == State.FINISHED, 60)
    finally:
        runtime.stop()


@pytest.mark.timeout(120)
def test_real_model_with_corrupt_onnx_ends_broken(built, tmp_path) -> None:
    source = require(built, "model")
    components = tmp_path / "components"
    shutil.copytree(source / "model", components / "model")
    onnx = next((components / "model/greengrass-build/artifacts").rglob("model.onnx"))
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    runtime = LocalRuntime(RuntimeOptions(
        root=tmp_path / "bad", components_dir=components,
        policy=RestartPolicy(backoff_initial_s=0.1)))
    try:
        runtime.start()
        assert runtime.supervisor.wait_until(lambda s: s[MODEL].state == State.BROKEN, 60)
        assert "sha256" in (tmp_path / "bad/logs" / f"{MODEL}.log").read_text().lower()
    finally:
        runtime.stop()


@pytest.mark.timeout(120)
def test_nucleus_mode_over_all_built_components(built, tmp_path) -> None:
    components = require(built, "model", "inference", "image-source", "uploader", "dashboard")
    runtime = LocalRuntime(RuntimeOptions(root=tmp_path / "root", components_dir=components,
                                          thing_name="line-3"))
    try:
        runtime.start(run_components=False)
        env_dir = tmp_path / "root/env"
        names = sorted(p.stem for p in env_dir.glob("*.env"))
        assert names == sorted(["com.example.vqi.ImageSource", INFERENCE, MODEL,
                                "com.example.vqi.Uploader", "com.example.vqi.Dashboard"])
        # A dependency's work folder and (empty) configuration value reach the Dashboard.
        dashboard = read_env_file(env_dir / "com.example.vqi.Dashboard.env")
        assert dashboard["VQI_IMAGE_WORK_DIR"] == str(
            (tmp_path / "root/work/com.example.vqi.ImageSource").resolve())
        assert dashboard["VQI_IMAGE_STATE_DIR"] == ""
        inference = read_env_file(env_dir / f"{INFERENCE}.env")
        assert (Path(inference["VQI_MODEL_DIR"]) / "model.onnx").is_file()
        app = Path(inference["PYTHONPATH"])
        assert (app / "vqi_inference").is_dir() and (app / "shared").is_dir()
        uploader = read_env_file(env_dir / "com.example.vqi.Uploader.env")
        # The recipe's setEnv takes the port from Stream Manager's configuration.
        assert uploader["STREAM_MANAGER_SERVER_PORT"] == str(runtime.stream_manager.port)
        # Without interpolation the IoT Core policy must hold no {iot:thingName}: vqi/+/results.
        code = ("from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2 as C\n"
                "C().publish_to_iot_core(topic_name='vqi/line-3/results', qos='1', "
                "payload=b'{\"ok\": true}')\n")
        done = subprocess.run([sys.executable, "-c", code], env=inference, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        cloud = tmp_path / "root/cloud/iotcore.jsonl"
        assert wait_for(lambda: cloud.exists() and "vqi/line-3/results" in cloud.read_text())
        assert json.loads((tmp_path / "root/status.json").read_text())["mode"] == "nucleus"
    finally:
        runtime.stop()
