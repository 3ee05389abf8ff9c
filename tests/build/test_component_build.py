"""The GDK custom build contract: each component folder builds into greengrass-build/.

Every build here runs in a fresh checkout in a temporary folder, never in this one, so that two
runs of the suite (or a developer's own `gdk component build`) cannot clash over its output.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Optional

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = {
    "model": "com.example.vqi.Model",
    "inference": "com.example.vqi.Inference",
    "image-source": "com.example.vqi.ImageSource",
    "uploader": "com.example.vqi.Uploader",
    "dashboard": "com.example.vqi.Dashboard",
}
URI_PREFIX = "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/"
SCHEMA = json.loads((REPO / "scripts/vqitools/schemas/gdk-config-1.6.2.schema.json").read_text())


def gdk_config(folder: str) -> dict:
    return json.loads((REPO / "components" / folder / "gdk-config.json").read_text())


# What a checkout holds that the build reads: the build script, the vendored package, components.
CHECKOUT_PATHS = ("scripts/build-component", "scripts/vqitools", "shared", "components")
NOT_CHECKED_OUT = ("greengrass-build", "__pycache__")  # build output and caches; dot-files too
OLD = datetime.datetime(2001, 2, 3, 4, 5, 6).timestamp()
NEW = datetime.datetime(2031, 7, 8, 9, 10, 12).timestamp()


def checkout(dest: Path, source: Path = REPO, umask: int = 0o022,
             mtime: Optional[float] = None) -> Path:
    """A fresh checkout of `source` at `dest`, as git makes one: every file written anew with
    mode 0666 (0777 if executable) less `umask`, and, if given, modified at `mtime`."""
    previous = os.umask(umask)
    try:
        for rel in CHECKOUT_PATHS:
            origin = source / rel
            files = [origin] if origin.is_file() else sorted(origin.rglob("*"))
            for path in files:
                parts = path.relative_to(source).parts
                if not path.is_file() or any(
                        p in NOT_CHECKED_OUT or p.startswith(".") or p.endswith(".pyc")
                        for p in parts):
                    continue
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                executable = path.stat().st_mode & stat.S_IXUSR
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o777 if executable else 0o666)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(path.read_bytes())
                if mtime is not None:
                    os.utime(target, (mtime, mtime))
    finally:
        os.umask(previous)
    venv = REPO / ".venv"
    if venv.is_dir():  # the checkout's bootstrapped venv: the build script's fallback python
        (dest / ".venv").symlink_to(venv)
    return dest


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


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One checkout in a temporary folder with every component built in it (its components/)."""
    root = checkout(tmp_path_factory.mktemp("checkout"))
    for folder in sorted(COMPONENTS):
        proc = run_custom_build(root / "components" / folder)
        assert proc.returncode == 0, f"{folder}: {proc.stderr}"
    return root / "components"


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
def test_custom_build_command_writes_the_layout_gdk_publish_consumes(folder, built):
    component_dir = built / folder
    name = COMPONENTS[folder]
    settings = gdk_config(folder)["component"][name]
    recipe = yaml.safe_load((component_dir / "greengrass-build/recipes/recipe.yaml").read_text())
    assert recipe["ComponentName"] == name
    assert recipe["ComponentVersion"] == settings["version"]
    assert recipe["ComponentPublisher"] == settings["author"]
    artifact_dir = component_dir / "greengrass-build/artifacts" / name / settings["version"]
    for manifest in recipe["Manifests"]:
        for artifact in manifest.get("Artifacts", []):
            assert artifact["URI"].startswith(URI_PREFIX)
            assert (artifact_dir / artifact["URI"][len(URI_PREFIX):]).is_file()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("folder", ["inference", "image-source", "uploader"])
def test_checkouts_with_other_file_times_and_modes_build_identical_artifact_bytes(
        folder, tmp_path):
    first = checkout(tmp_path / "first", umask=0o022, mtime=OLD)
    second = checkout(tmp_path / "second", source=first, umask=0o077, mtime=NEW)
    requirements = Path("components", folder, "requirements.txt")  # zipped into the artifact
    one, other = (first / requirements).stat(), (second / requirements).stat()
    assert (stat.S_IMODE(one.st_mode), stat.S_IMODE(other.st_mode)) == (0o644, 0o600)
    assert other.st_mtime - one.st_mtime > 10 * 365 * 86400

    for root in (first, second):
        proc = run_custom_build(root / "components" / folder)
        assert proc.returncode == 0, proc.stderr

    digests = artifact_digests(first / "components" / folder)
    assert any(name.endswith(".zip") for name in digests)
    assert artifact_digests(second / "components" / folder) == digests


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "folder,package",
    [("inference", "vqi_inference"), ("image-source", "vqi_image_source"),
     ("uploader", "vqi_uploader")],
)
def test_unpacked_artifact_imports_the_vendored_shared_package(folder, package, built, tmp_path):
    name = COMPONENTS[folder]
    archive = next((built / folder / "greengrass-build/artifacts" / name).rglob(f"{package}.zip"))
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
