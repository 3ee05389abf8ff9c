"""The committed model.json is complete and agrees with the committed ONNX graph."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

COMPONENT = Path(__file__).resolve().parents[2] / "components" / "model"


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((COMPONENT / "model.json").read_text())


@pytest.fixture(scope="module")
def graph() -> object:
    import onnx

    return onnx.load(str(COMPONENT / "model.onnx")).graph


def _dims(value_info: object) -> list[int]:
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_metadata_has_every_contract_key(meta: dict) -> None:
    for key in ("schema_version", "name", "version", "task", "class_names", "onnx_file",
                "sha256", "input", "output", "thresholds", "metrics", "source", "export"):
        assert key in meta, key
    assert meta["schema_version"] == 1 and meta["task"] == "detect"
    assert meta["class_names"] == ["scratch"]
    for key in ("name", "shape", "dtype", "imgsz", "color", "layout", "scale", "mean", "std",
                "letterbox"):
        assert key in meta["input"], key
    for key in ("pad_value", "center", "scaleup", "stride", "auto"):
        assert key in meta["input"]["letterbox"], key
    for key in ("name", "shape", "layout", "box_format", "coordinates", "has_objectness",
                "nms_included"):
        assert key in meta["output"], key
    for key in ("confidence", "iou", "max_detections", "per_class"):
        assert key in meta["thresholds"], key
    for key in ("framework", "model_yaml", "train_command", "dataset", "created_utc"):
        assert key in meta["source"], key
    assert {"opset", "simplified", "quantized", "parity"} <= set(meta["export"])
    assert {"mAP50", "mAP50-95"} <= set(meta["metrics"]["val"])
    assert {"mAP50", "mAP50-95"} <= set(meta["metrics"]["test_onnx"])


def test_sha256_and_size_match_the_file(meta: dict) -> None:
    data = (COMPONENT / meta["onnx_file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == meta["sha256"]
    assert len(data) == meta["size_bytes"]
    assert len(data) < 5_000_000, "the demo model must stay a few MB"


def test_input_and_output_match_the_graph(meta: dict, graph: object) -> None:
    inits = {i.name for i in graph.initializer}
    inputs = [v for v in graph.input if v.name not in inits]
    assert [v.name for v in inputs] == [meta["input"]["name"]]
    assert _dims(inputs[0]) == meta["input"]["shape"]
    assert meta["input"]["shape"][2:] == meta["input"]["imgsz"]
    assert [v.name for v in graph.output] == [meta["output"]["name"]]
    assert _dims(graph.output[0]) == meta["output"]["shape"]
    assert meta["output"]["shape"][1] == 4 + len(meta["class_names"])


def test_opset_matches_the_graph(meta: dict) -> None:
    import onnx

    model = onnx.load(str(COMPONENT / "model.onnx"))
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset == meta["export"]["opset"]


def test_onnxruntime_output_has_the_declared_shape(meta: dict) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(COMPONENT / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    x = np.zeros(meta["input"]["shape"], np.float32)
    (out,) = sess.run([meta["output"]["name"]], {meta["input"]["name"]: x})
    assert list(out.shape) == meta["output"]["shape"]


def test_export_parity_was_within_tolerance(meta: dict) -> None:
    par = meta["export"]["parity"]
    assert par["images"] > 0
    assert par["max_abs_diff"] <= par["tolerance"] <= 1e-2
