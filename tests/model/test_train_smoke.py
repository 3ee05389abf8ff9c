"""Tiny offline train -> export round trip (opt-in: VQI_MODEL_SMOKE=1; about a minute on 2 CPUs).

Trains 1 epoch at 64 px on 8 generated images from the model YAML, exports to ONNX and checks
that the export's parity check and model.json hold for a model that was never committed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "scripts" / "model"

pytestmark = pytest.mark.skipif(os.environ.get("VQI_MODEL_SMOKE") != "1",
                                reason="training smoke test is opt-in: VQI_MODEL_SMOKE=1")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), *args], capture_output=True, text=True,
                          timeout=400)


@pytest.mark.timeout(420)
def test_train_one_epoch_then_export(tmp_path: Path) -> None:
    assert _cli("generate", "--out", str(tmp_path / "d"), "--seed", "1", "--train", "8",
                "--val", "4", "--imgsz", "64").returncode == 0
    res = _cli("train", "--data", str(tmp_path / "d" / "data.yaml"), "--epochs", "1",
               "--imgsz", "64", "--batch", "4", "--workers", "0",
               "--project", str(tmp_path / "runs"), "--name", "smoke")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "offline settings: YOLO_OFFLINE=1" in res.stdout
    assert "val mAP50=" in res.stdout
    best = tmp_path / "runs" / "smoke" / "weights" / "best.pt"
    assert best.exists()
    res = _cli("export", "--weights", str(best), "--out", str(tmp_path / "onnx"), "--imgsz", "64",
               "--data", str(tmp_path / "d" / "data.yaml"))
    assert res.returncode == 0, res.stderr[-3000:]
    meta = json.loads((tmp_path / "onnx" / "model.json").read_text())
    assert meta["input"]["shape"] == [1, 3, 64, 64]
    assert meta["output"]["shape"][:2] == [1, 5]
    assert meta["export"]["parity"]["passed"] is True
    assert "train" in meta["source"]["train_command"]
    # the drift reference, from the 4 val images through the device path, readable by Inference
    assert meta["reference"]["images"] == 4 and meta["reference"]["split"] == "val"
