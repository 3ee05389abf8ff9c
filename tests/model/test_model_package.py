"""scripts/model package: verified copy into a component folder, version and docs updated."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from vqitools.model.package import BEGIN, END, add_challenger, package, promote

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


def challenger_of(exported: Path, version: str) -> Path:
    meta = json.loads((exported / "model.json").read_text())
    meta["version"] = version
    meta["thresholds"]["confidence"] = 0.3
    (exported / "model.json").write_text(json.dumps(meta))
    return exported


def test_a_challenger_is_packaged_beside_the_champion_and_built_into_its_zip(
        component: Path, exported: Path, tmp_path: Path) -> None:
    from vqitools.build import build_component

    package(exported, component, version="1.1.0")
    shutil.copy2(COMPONENT / "gdk-config.json", component / "gdk-config.json")
    shutil.copytree(COMPONENT / "samples", component / "samples")
    add_challenger(challenger_of(exported, "2.0.0"), component)
    assert json.loads((component / "challenger" / "model.json").read_text())["version"] == "2.0.0"
    assert "challenger.zip" in (component / "recipe.yaml").read_text()
    add_challenger(exported, component)  # twice: still one artifact entry
    assert (component / "recipe.yaml").read_text().count("challenger.zip") == 1
    _, built = build_component(component)
    archive = next(a for a in built if a.name == "challenger.zip")
    assert sorted(zipfile.ZipFile(archive.path).namelist()) == ["model.json", "model.onnx"]


def test_promote_makes_the_challenger_the_champion(component: Path, exported: Path) -> None:
    package(exported, component, version="1.1.0")
    add_challenger(challenger_of(exported, "2.0.0"), component)
    meta = promote(component, version="1.2.0")
    assert meta["version"] == "1.2.0" and meta["thresholds"]["confidence"] == 0.3
    assert "reference" not in meta  # the old model's drift reference does not carry over
    assert not (component / "challenger").exists()
    recipe = (component / "recipe.yaml").read_text()
    assert "challenger.zip" not in recipe and 'ComponentVersion: "1.2.0"' in recipe


def test_a_tampered_challenger_is_refused(component: Path, exported: Path) -> None:
    data = bytearray((exported / "model.onnx").read_bytes())
    data[200] ^= 0xFF
    (exported / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="refusing .* as a challenger: sha256 mismatch"):
        add_challenger(exported, component)
    assert not (component / "challenger").exists()


def test_promote_without_a_challenger_says_so(component: Path) -> None:
    with pytest.raises(ValueError, match="no challenger to promote"):
        promote(component)
