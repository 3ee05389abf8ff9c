"""The build refuses recipes it cannot build, clearly, and leaves no half-written output."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build-component"

RECIPE = """\
RecipeFormatVersion: "2020-01-25"
ComponentName: {name}
ComponentVersion: "1.0.0"
Manifests:
  - Platform:
      os: linux
    Artifacts:
      - URI: s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/{artifact}
"""


def make_component(root: Path, name="com.example.Test", recipe_name="com.example.Test",
                   artifact="data.txt", recipe_text=None) -> Path:
    folder = root / "components" / "test"
    folder.mkdir(parents=True)
    config = {
        "component": {name: {
            "author": "Tester", "version": "NEXT_PATCH",
            "build": {"build_system": "custom", "custom_build_command": ["python3", str(BUILD)]},
            "publish": {"bucket": "b", "region": "us-east-1"},
        }},
        "gdk_version": "1.6.2",
    }
    (folder / "gdk-config.json").write_text(json.dumps(config))
    text = recipe_text if recipe_text is not None else RECIPE.format(
        name=recipe_name, artifact=artifact
    )
    (folder / "recipe.yaml").write_text(text)
    return folder


def build(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["python3", str(BUILD)], cwd=folder, capture_output=True, text=True,
                          timeout=120)


def test_a_plain_file_artifact_is_copied(tmp_path):
    folder = make_component(tmp_path)
    (folder / "data.txt").write_text("hello")
    proc = build(folder)
    assert proc.returncode == 0, proc.stderr
    out = folder / "greengrass-build/artifacts/com.example.Test/NEXT_PATCH/data.txt"
    assert out.read_text() == "hello"


def test_missing_artifact_file_is_refused_and_nothing_is_left(tmp_path):
    folder = make_component(tmp_path)
    proc = build(folder)
    assert proc.returncode != 0
    assert "missing artifact file" in proc.stderr and "data.txt" in proc.stderr
    assert not (folder / "greengrass-build").exists()
    assert not list(folder.glob(".greengrass-build*"))


def test_missing_zip_source_folder_is_refused(tmp_path):
    folder = make_component(tmp_path, artifact="app.zip")
    proc = build(folder)
    assert proc.returncode != 0
    assert "app.zip" in proc.stderr and "app/" in proc.stderr


def test_malformed_yaml_is_refused(tmp_path):
    folder = make_component(tmp_path, recipe_text="RecipeFormatVersion: [unclosed\n")
    proc = build(folder)
    assert proc.returncode != 0
    assert "malformed recipe" in proc.stderr
    assert not (folder / "greengrass-build").exists()


def test_name_mismatch_is_refused(tmp_path):
    folder = make_component(tmp_path, recipe_name="com.example.Other")
    (folder / "data.txt").write_text("x")
    proc = build(folder)
    assert proc.returncode != 0
    assert "name mismatch" in proc.stderr and "com.example.Other" in proc.stderr


def test_two_recipe_files_are_refused(tmp_path):
    folder = make_component(tmp_path)
    (folder / "data.txt").write_text("x")
    (folder / "recipe.json").write_text("{}")
    proc = build(folder)
    assert proc.returncode != 0
    assert "more than one recipe" in proc.stderr


def test_a_failed_rebuild_removes_the_stale_output(tmp_path):
    folder = make_component(tmp_path)
    (folder / "data.txt").write_text("x")
    assert build(folder).returncode == 0
    (folder / "data.txt").unlink()
    assert build(folder).returncode != 0
    assert not (folder / "greengrass-build").exists()


@pytest.mark.parametrize("uri", ["s3://my-bucket/data.txt",
                                 "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/a/data.txt"])
def test_artifact_uris_must_use_the_gdk_placeholders(tmp_path, uri):
    text = RECIPE.format(name="com.example.Test", artifact="data.txt").replace(
        "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/data.txt", uri)
    folder = make_component(tmp_path, recipe_text=text)
    (folder / "data.txt").write_text("x")
    proc = build(folder)
    assert proc.returncode != 0
    assert "must be s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/<file>" in proc.stderr


@pytest.mark.parametrize("requirements,ok", [("numpy==2.4.6\nsix==1.16.0 --hash=sha256:ab\n", True),
                                             ("numpy>=1.0\n", False), ("numpy\n", False)])
def test_a_python_zip_needs_exactly_pinned_requirements(tmp_path, requirements, ok):
    folder = make_component(tmp_path, artifact="app.zip")
    (folder / "app").mkdir()
    (folder / "app" / "__init__.py").write_text("")
    (folder / "requirements.txt").write_text(requirements)
    proc = build(folder)
    assert (proc.returncode == 0) is ok, proc.stderr
    if not ok:
        assert "is not pinned as name==version" in proc.stderr


def test_a_refused_build_removes_the_skeleton_gdk_creates_before_calling_the_script(tmp_path):
    folder = make_component(tmp_path, recipe_name="com.example.Other")
    (folder / "greengrass-build" / "recipes").mkdir(parents=True)  # as `gdk component build` does
    skeleton = folder / "greengrass-build" / "artifacts" / "com.example.Test" / "NEXT_PATCH"
    skeleton.mkdir(parents=True)
    proc = build(folder)
    assert proc.returncode != 0 and "name mismatch" in proc.stderr
    assert not (folder / "greengrass-build").exists()
