"""model.json is derived from the ONNX graph, and graphs the device cannot decode are refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vqitools.model.export import build_metadata


def _graph(path: Path, in_shape: list, out_shape: list) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, in_shape)
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)
    node = helper.make_node("Identity", ["images"], ["output0"])
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def _meta(path: Path, names: list[str]) -> dict:
    return build_metadata(path, names, "1.0.0", {"val": {}}, {"framework": "test"},
                          {"simplified": True, "quantized": False})


def test_metadata_is_read_from_the_graph(tmp_path: Path) -> None:
    p = _graph(tmp_path / "m.onnx", [1, 3, 256, 256], [1, 6, 1344])
    meta = _meta(p, ["scratch", "dent"])
    assert meta["input"]["name"] == "images" and meta["input"]["shape"] == [1, 3, 256, 256]
    assert meta["input"]["imgsz"] == [256, 256]
    assert meta["output"]["shape"] == [1, 6, 1344] and meta["output"]["num_anchors"] == 1344
    assert meta["export"]["opset"] == 17
    data = p.read_bytes()
    assert meta["sha256"] == hashlib.sha256(data).hexdigest() and meta["size_bytes"] == len(data)


def test_end_to_end_head_output_is_refused(tmp_path: Path) -> None:
    p = _graph(tmp_path / "m.onnx", [1, 3, 320, 320], [1, 300, 6])
    with pytest.raises(ValueError, match="4\\+nc"):
        _meta(p, ["scratch"])


def test_dynamic_shapes_are_refused(tmp_path: Path) -> None:
    p = _graph(tmp_path / "m.onnx", ["batch", 3, 320, 320], ["batch", 5, 2100])
    with pytest.raises(ValueError, match="static shapes"):
        _meta(p, ["scratch"])
