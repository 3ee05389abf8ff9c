"""Fixtures for the inference component's tests: a real dev model, real image files, schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "components" / "inference"
sys.path.insert(0, str(COMPONENT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import devmodel  # noqa: E402

DEMO_MODEL = ROOT / "components" / "model"
SCHEMA_PATH = ROOT / "shared" / "schemas" / "inference-result.schema.json"


@pytest.fixture(scope="session")
def dev_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.onnx + model.json for a 3-class YOLOv8n (random weights) at 320 px."""
    return devmodel.build(tmp_path_factory.mktemp("devmodel"))


@pytest.fixture(scope="session")
def result_validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture()
def assert_valid_result(result_validator: Any):
    """Validate one result message (dict) against the JSON Schema, with readable errors."""

    def check(message: Dict[str, Any]) -> None:
        errors = sorted(result_validator.iter_errors(message), key=lambda e: list(e.path))
        assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors)

    return check


def textured_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A BGR image with smooth texture and a few solid shapes (gives the model something)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 3)
    for _ in range(6):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(img, centre, int(rng.integers(3, max(4, min(h, w) // 3))), colour, -1)
    return img


def write_image(path: Path, image: np.ndarray, params: Any = None) -> Path:
    ok, data = cv2.imencode(path.suffix, image, params or [])
    assert ok, path
    path.write_bytes(data.tobytes())
    return path


@pytest.fixture()
def runtime(assert_valid_result: Any) -> Iterator[Any]:
    """The local IPC server for one test; every result published on it must match the schema."""
    from localrt import LocalRuntime

    rt = LocalRuntime()
    yield rt
    rt.close()
    for message in rt.collector.on("vqi/results"):
        assert_valid_result(message)
