"""train --init-onnx: the shipped model's weights go back into a network built from its YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from vqitools.model.offline import make_offline
from vqitools.model.train import DEFAULT_MODEL_YAML, load_onnx_weights

pytestmark = pytest.mark.toolchain

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "components" / "model" / "model.onnx"


def build(yaml_path: Path):
    make_offline()
    from ultralytics import YOLO

    return YOLO(str(yaml_path), task="detect").model


def test_the_rebuilt_network_reproduces_the_shipped_model() -> None:
    diff = load_onnx_weights(build(DEFAULT_MODEL_YAML), SHIPPED)
    assert diff < 1e-2  # pixels, on outputs up to 320


def test_a_model_of_another_architecture_is_refused(tmp_path: Path) -> None:
    wider = tmp_path / "wider.yaml"
    wider.write_text(DEFAULT_MODEL_YAML.read_text().replace("[0.33, 0.1875, 384]",
                                                            "[0.33, 0.25, 384]"))
    with pytest.raises(ValueError, match="not the same architecture"):
        load_onnx_weights(build(wider), SHIPPED)
