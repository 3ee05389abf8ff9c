"""The committed model.json is complete and agrees with the committed ONNX graph.

Every figure is checked against a reference computed here from the artifacts themselves
(hashlib, the ONNX graph, a fresh evaluation), never against what the exporter wrote.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from vqitools.model.export import build_metadata

COMPONENT = Path(__file__).resolve().parents[2] / "components" / "model"
STRIDES = (8, 16, 32)  # the Detect head's three feature maps


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((COMPONENT / "model.json").read_text())


@pytest.fixture(scope="module")
def graph() -> object:
    import onnx

    return onnx.load(str(COMPONENT / "model.onnx")).graph


def _dims(value_info: object) -> list[int]:
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def figures_from_the_artifacts() -> dict:
    """The graph-derived figures of model.json, computed here from model.onnx alone."""
    import onnx

    data = (COMPONENT / "model.onnx").read_bytes()
    model = onnx.load_from_string(data)
    inits = {i.name for i in model.graph.initializer}
    (inp,) = [v for v in model.graph.input if v.name not in inits]
    (out,) = model.graph.output
    height, width = _dims(inp)[2:]
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "input": (inp.name, _dims(inp)),
        "output": (out.name, _dims(out)),
        "num_anchors": sum((height // s) * (width // s) for s in STRIDES),
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
    }


def figures_of(meta: dict) -> dict:
    return {
        "sha256": meta["sha256"],
        "size_bytes": meta["size_bytes"],
        "input": (meta["input"]["name"], meta["input"]["shape"]),
        "output": (meta["output"]["name"], meta["output"]["shape"]),
        "num_anchors": meta["output"]["num_anchors"],
        "opset": meta["export"]["opset"],
    }


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


def test_anchor_count_is_one_per_grid_cell_of_each_stride(meta: dict) -> None:
    assert meta["output"]["strides"] == list(STRIDES)
    assert meta["output"]["num_anchors"] == meta["output"]["shape"][2]
    assert meta["output"]["num_anchors"] == figures_from_the_artifacts()["num_anchors"]


def test_the_exporter_writes_the_figures_of_the_graph_it_is_given() -> None:
    written = build_metadata(COMPONENT / "model.onnx", ["scratch"], "1.0.0", {"val": {}},
                             {"framework": "test"}, {"simplified": True, "quantized": False})
    assert figures_of(written) == figures_from_the_artifacts()


@pytest.mark.timeout(300)
def test_recorded_test_metrics_are_what_the_model_scores_on_the_recorded_set(
        meta: dict, tmp_path: Path) -> None:
    """Re-made from its recorded seed and counts, the held-out set scores as recorded."""
    from vqitools.model.evaluate import evaluate_model, open_model, split_images
    from vqitools.model.synth import generate_dataset

    recorded = meta["metrics"]["test_onnx"]
    found = re.fullmatch(r"vqitools\.model\.synth seed=(\d+) counts=\{'test': (\d+)\}",
                         recorded["dataset"])
    assert found, recorded["dataset"]
    seed, count = int(found.group(1)), int(found.group(2))
    data = generate_dataset(tmp_path, seed, {"test": count}, jobs=2).data_yaml
    scored = evaluate_model(open_model(COMPONENT), split_images(data, "test"))
    assert (scored["images"], scored["instances"]) == (recorded["images"], recorded["instances"])
    # The figure was recorded on another CPU. OpenCV (the generator's drawing and blur) and
    # onnxruntime choose SIMD kernels per CPU, which moved it by 0.0006 / 0.0045 between two AMD
    # EPYC machines (2026-12-02); another model is off by 0.03 or more (448 px: 0.05 mAP50-95).
    assert scored["mAP50"] == pytest.approx(recorded["mAP50"], abs=0.01)
    assert scored["mAP50-95"] == pytest.approx(recorded["mAP50-95"], abs=0.01)


def test_export_parity_was_within_tolerance(meta: dict) -> None:
    par = meta["export"]["parity"]
    assert par["images"] > 0
    assert par["max_abs_diff"] <= par["tolerance"] <= 1e-2
