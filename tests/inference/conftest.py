"""Fixtures for the inference component's tests: a real dev model, real image files, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest

from . import devmodel
from .helpers import SCHEMA_PATH


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


@pytest.fixture()
def runtime(assert_valid_result: Any) -> Iterator[Any]:
    """The local IPC server for one test; every result published on it must match the schema."""
    from .localrt import LocalRuntime

    rt = LocalRuntime()
    yield rt
    rt.close()
    for message in rt.collector.on("vqi/results"):
        assert_valid_result(message)
