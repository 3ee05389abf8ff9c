"""scripts/model package: verified copy into a component folder, version and docs updated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vqitools.model.package import BEGIN, END, package

COMPONENT = Path(__file__).resolve().parents[2] / "components" / "model"


@pytest.fixture()
def component(tmp_path: Path) -> Path:
    dest = tmp_path / "component"
    dest.mkdir()
    for name in ("recipe.yaml", "verify_model.py", "README.md", "MODEL_CARD.md"):
        shutil.copy2(COMPONENT / name, dest / name)
    return dest


@pytest.fixture()
def exported(tmp_path: Path) -> Path:
    src = tmp_path / "exported"
    src.mkdir()
    shutil.copy2(COMPONENT / "model.onnx", src / "model.onnx")
    shutil.copy2(COMPONENT / "model.json", src / "model.json")
    return src


def test_package_copies_versions_and_documents(component: Path, exported: Path) -> None:
    package(exported, component, version="1.2.3")
    meta = json.loads((component / "model.json").read_text())
    assert meta["version"] == "1.2.3"
    assert (component / "model.onnx").read_bytes() == (exported / "model.onnx").read_bytes()
    assert 'ComponentVersion: "1.2.3"' in (component / "recipe.yaml").read_text()
    for doc in ("README.md", "MODEL_CARD.md"):
        text = (component / doc).read_text()
        block = text.split(BEGIN, 1)[1].split(END, 1)[0]
        assert meta["sha256"] in block and "1.2.3" in block


def test_package_refuses_a_tampered_model_and_changes_nothing(component: Path,
                                                              exported: Path) -> None:
    data = bytearray((exported / "model.onnx").read_bytes())
    data[100] ^= 0x01
    (exported / "model.onnx").write_bytes(bytes(data))
    before = {p.name: p.read_bytes() for p in component.iterdir()}
    with pytest.raises(ValueError, match="sha256 mismatch"):
        package(exported, component, version="2.0.0")
    assert {p.name: p.read_bytes() for p in component.iterdir()} == before


def test_package_rejects_a_non_semver_version(component: Path, exported: Path) -> None:
    with pytest.raises(ValueError, match="MAJOR.MINOR.PATCH"):
        package(exported, component, version="v2")
