"""The recipes' Install step itself: a clear message when the device has no python3."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("folder", ["inference", "image-source", "uploader"])
def test_install_without_python3_on_the_path_fails_with_what_to_install(folder, tmp_path):
    recipe = yaml.safe_load((REPO / "components" / folder / "recipe.yaml").read_text())
    script = recipe["Manifests"][0]["Lifecycle"]["Install"]["Script"]
    script = script.replace("{artifacts:decompressedPath}", str(tmp_path)).replace(
        "{work:path}", str(tmp_path / "work"))
    proc = subprocess.run(["/bin/sh", "-c", script], env={"PATH": str(tmp_path / "empty")},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert "python3 not found" in proc.stderr and "python3-venv" in proc.stderr


@pytest.mark.parametrize("folder", ["inference", "image-source", "uploader"])
def test_recipes_declare_linux_on_the_architectures_with_wheels(folder):
    recipe = yaml.safe_load((REPO / "components" / folder / "recipe.yaml").read_text())
    platform = recipe["Manifests"][0]["Platform"]
    assert platform["os"] == "linux"
    assert platform["architecture"] == "/^(amd64|aarch64)$/"
