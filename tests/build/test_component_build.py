"""The GDK custom build contract: each component folder builds into greengrass-build/."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = {
    "model": "com.example.vqi.Model",
    "inference": "com.example.vqi.Inference",
    "image-source": "com.example.vqi.ImageSource",
    "uploader": "com.example.vqi.Uploader",
}
URI_PREFIX = "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/"
SCHEMA = json.loads((REPO / "scripts/vqitools/schemas/gdk-config-1.6.2.schema.json").read_text())


def gdk_config(folder: str) -> dict:
    return json.loads((REPO / "components" / folder / "gdk-config.json").read_text())


def run_custom_build(component_dir: Path) -> subprocess.CompletedProcess:
    """Run the configured custom_build_command inside the folder, as `gdk component build` does."""
    config = json.loads((component_dir / "gdk-config.json").read_text())
    ((_, settings),) = config["component"].items()
    command = settings["build"]["custom_build_command"]
    return subprocess.run(command, cwd=component_dir, capture_output=True, text=True, timeout=300)


def artifact_digests(component_dir: Path) -> dict:
    root = component_dir / "greengrass-build" / "artifacts"
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("folder", sorted(COMPONENTS))
def test_gdk_config_validates_against_the_gdk_1_6_2_schema(folder):
    config = gdk_config(folder)
    jsonschema.validate(config, SCHEMA)
    ((name, settings),) = config["component"].items()
    assert name == COMPONENTS[folder]
    assert config["gdk_version"] == "1.6.2"
    assert settings["version"] == "NEXT_PATCH"
    assert settings["build"]["build_system"] == "custom"


@pytest.mark.parametrize("folder", sorted(COMPONENTS))
def test_recipe_names_the_component_and_uses_gdk_artifact_uris(folder):
    recipe = yaml.safe_load((REPO / "components" / folder / "recipe.yaml").read_text())
    assert recipe["RecipeFormatVersion"] == "2020-01-25"
    assert recipe["ComponentName"] == COMPONENTS[folder]
    uris = [a["URI"] for m in recipe["Manifests"] for a in m.get("Artifacts", [])]
    assert uris, "every component ships at least one artifact"
    assert all(u.startswith(URI_PREFIX) and "/" not in u[len(URI_PREFIX):] for u in uris)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("folder", sorted(COMPONENTS))
def test_custom_build_command_writes_the_layout_gdk_publish_consumes(folder):
    component_dir = REPO / "components" / folder
    proc = run_custom_build(component_dir)
    assert proc.returncode == 0, proc.stderr
    name = COMPONENTS[folder]
    settings = gdk_config(folder)["component"][name]
    built = yaml.safe_load((component_dir / "greengrass-build/recipes/recipe.yaml").read_text())
    assert built["ComponentName"] == name
    assert built["ComponentVersion"] == settings["version"]
    assert built["ComponentPublisher"] == settings["author"]
    artifact_dir = component_dir / "greengrass-build/artifacts" / name / settings["version"]
    for manifest in built["Manifests"]:
        for artifact in manifest.get("Artifacts", []):
            assert artifact["URI"].startswith(URI_PREFIX)
            assert (artifact_dir / artifact["URI"][len(URI_PREFIX):]).is_file()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("folder", ["inference", "image-source", "uploader"])
def test_building_twice_gives_identical_artifact_bytes(folder):
    component_dir = REPO / "components" / folder
    assert run_custom_build(component_dir).returncode == 0
    first = artifact_digests(component_dir)
    (component_dir / "greengrass-build").rename(component_dir / "greengrass-build.old")
    try:
        assert run_custom_build(component_dir).returncode == 0
    finally:
        shutil.rmtree(component_dir / "greengrass-build.old")
    assert artifact_digests(component_dir) == first


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "folder,package",
    [("inference", "vqi_inference"), ("image-source", "vqi_image_source"),
     ("uploader", "vqi_uploader")],
)
def test_unpacked_artifact_imports_the_vendored_shared_package(folder, package, tmp_path):
    component_dir = REPO / "components" / folder
    assert run_custom_build(component_dir).returncode == 0
    name = COMPONENTS[folder]
    archive = next((component_dir / "greengrass-build/artifacts" / name).rglob(f"{package}.zip"))
    target = tmp_path / package  # Greengrass unpacks a zip into a folder named after it
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(target)
    assert (target / package / "__init__.py").is_file()
    assert (target / "requirements.txt").is_file()
    # As the recipe runs it: PYTHONPATH is the unpacked folder (setEnv), nothing else of the repo.
    proc = subprocess.run(
        [sys.executable, "-s", "-c", "import shared.messages, shared.config; print('ok')"],
        cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.stdout.strip() == "ok", proc.stderr
    names = zipfile.ZipFile(archive).namelist()
    assert not any(n.endswith(".pyc") or "__pycache__" in n for n in names)
