"""Model loading refuses missing, tampered and incompatible models with a clear message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vqi_inference import model as M

from .devmodel import write_model_json


@pytest.fixture()
def model_copy(dev_model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(dev_model_dir, target)
    return target


def edit_json(folder: Path, **changes: object) -> None:
    meta = json.loads((folder / "model.json").read_text())
    for dotted, value in changes.items():
        node = meta
        parts = dotted.split("__")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    (folder / "model.json").write_text(json.dumps(meta))


def refused(folder: Path) -> str:
    with pytest.raises(M.ModelError) as info:
        M.load(str(folder), M.SessionSettings())
    return str(info.value)


def test_good_model_loads_with_its_signature(model_copy: Path) -> None:
    loaded = M.load(str(model_copy), M.SessionSettings(intra_op_threads=1))
    assert loaded.spec.class_names == ("scratch", "dent", "stain")
    assert loaded.spec.imgsz == (320, 320) and loaded.num_boxes == 2100
    assert loaded.providers[-1] == "CPUExecutionProvider"


def test_tampered_onnx_is_refused_before_loading(model_copy: Path) -> None:
    with open(model_copy / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    assert "does not match model.json: sha256" in refused(model_copy)


def test_missing_metadata(model_copy: Path) -> None:
    (model_copy / "model.json").unlink()
    assert "model metadata not found" in refused(model_copy)


def test_missing_onnx(model_copy: Path) -> None:
    (model_copy / "model.onnx").unlink()
    assert "model file not found" in refused(model_copy)


def test_unset_model_dir() -> None:
    with pytest.raises(M.ModelError, match="VQI_MODEL_DIR"):
        M.load(None, M.SessionSettings())


def test_class_count_must_match_the_output(model_copy: Path) -> None:
    write_model_json(model_copy, "model.onnx", ["scratch"], 320, 2100)
    assert "does not fit 1 classes" in refused(model_copy)


def test_input_name_must_match(model_copy: Path) -> None:
    edit_json(model_copy, input__name="pixels")
    assert "model input is named 'images'" in refused(model_copy)


def test_input_size_must_match(model_copy: Path) -> None:
    edit_json(model_copy, input__imgsz=[640, 640])
    assert "does not match imgsz" in refused(model_copy)


@pytest.mark.parametrize("field,value,message", [
    ("schema_version", 2, "schema_version 2 is not supported"),
    ("task", "segment", "task 'segment' is not supported"),
    ("output__nms_included", True, "NMS inside the graph"),
    ("sha256", "abc", "64-digit hex"),
    ("onnx_file", "../model.onnx", "must be a file name"),
    ("thresholds__confidence", "high", "thresholds.confidence"),
    ("thresholds__iou", 1.5, "thresholds.iou"),
    ("thresholds__per_class", {"scratch": "x"}, "thresholds.per_class"),
    ("input__letterbox", {"pad_value": "grey"}, "input.letterbox"),
    ("input__mean", [0, 0], "input.mean"),
    ("thresholds__max_detections", 0, "thresholds.max_detections"),
])
def test_unsupported_metadata(model_copy: Path, field: str, value: object, message: str) -> None:
    edit_json(model_copy, **{field: value})
    assert message in refused(model_copy)


def test_corrupt_onnx_with_matching_hash_is_refused(model_copy: Path) -> None:
    (model_copy / "model.onnx").write_bytes(b"not an onnx graph")
    write_model_json(model_copy, "model.onnx", ["scratch", "dent", "stain"], 320, 2100)
    assert "onnxruntime cannot load" in refused(model_copy)
