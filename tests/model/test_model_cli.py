"""scripts/model end to end on small inputs: generate a held-out set and evaluate through ORT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "scripts" / "model"
COMPONENT = ROOT / "components" / "model"


def _cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(CLI), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.timeout(60)
def test_help_lists_every_subcommand() -> None:
    res = _cli("--help")
    assert res.returncode == 0
    for sub in ("generate", "train", "export", "quantize", "evaluate", "package", "reference",
                "promote", "challenger-report"):
        assert sub in res.stdout


@pytest.mark.timeout(180)
def test_committed_model_meets_the_bar_on_a_fresh_seed(tmp_path: Path) -> None:
    """A quick version of the model-card check: 80 held-out images from an unseen seed."""
    gen = _cli("generate", "--out", str(tmp_path), "--seed", "4242", "--train", "0",
               "--val", "0", "--test", "80")
    assert gen.returncode == 0, gen.stderr
    res = _cli("evaluate", "--model-dir", str(COMPONENT), "--data", str(tmp_path / "data.yaml"),
               "--min-map50", "0.85")
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert out["images"] == 80 and out["instances"] > 40
    assert out["mAP50"] >= 0.85


@pytest.mark.timeout(60)
def test_evaluate_reports_a_missing_split_clearly(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntrain: images/train\n")
    res = _cli("evaluate", "--model-dir", str(COMPONENT), "--data", str(tmp_path / "data.yaml"))
    assert res.returncode == 2
    assert "has no 'test' split" in res.stderr
