"""int8 QDQ quantization: writes a verified, smaller model, or nothing when the guard trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vqitools.model.quantize import head_decode_nodes, quantize
from vqitools.model.synth import generate_dataset

COMPONENT = Path(__file__).resolve().parents[2] / "components" / "model"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qdata")
    return generate_dataset(root, 99, {"train": 8, "val": 6}).data_yaml


def test_detect_decode_stays_float() -> None:
    names = head_decode_nodes(COMPONENT / "model.onnx")
    assert names and all("/model." in n for n in names)
    import onnx

    ops = {n.name: n.op_type for n in onnx.load(str(COMPONENT / "model.onnx")).graph.node}
    assert "Conv" not in {ops[n] for n in names}
    assert {"Sigmoid", "Concat"} <= {ops[n] for n in names}


@pytest.mark.timeout(180)
def test_guard_refuses_and_writes_nothing(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8"
    report = quantize(COMPONENT, out, data.parent / "images" / "train", data, n_calib=4,
                      max_map50_drop=-1.0)
    assert report["accepted"] is False and "nothing written" in report["reason"]
    assert not out.exists()


@pytest.mark.timeout(180)
def test_accepted_model_is_qdq_smaller_and_verified(data: Path, tmp_path: Path) -> None:
    import onnx

    from vqitools.model.package import _verifier

    out = tmp_path / "int8"
    report = quantize(COMPONENT, out, data.parent / "images" / "train", data, n_calib=4,
                      max_map50_drop=1.0)
    assert report["accepted"] is True
    assert report["int8"]["size_bytes"] < report["float"]["size_bytes"] / 2
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta = json.loads((out / "model.json").read_text())
    assert meta["export"]["quantized"] is True and meta["export"]["precision"] == "int8-qdq"
    _verifier(COMPONENT).verify(out)  # sha256/size/shape consistent
