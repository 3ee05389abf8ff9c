"""Artifacts land where Greengrass puts them; ZIPs unpack under <zip stem>/, and only safely."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import stat
import zipfile
from pathlib import Path

import pytest
import yaml

from localgg.deploy import DeployError, deploy_component, safe_unzip
from localgg.recipes import load_built_recipe

from .lifecycle_fixtures import write_built_component


def test_artifacts_are_copied_and_zip_unpacked_under_its_stem(tmp_path: Path) -> None:
    build = write_built_component(
        tmp_path / "components", "t.App", version="1.0.0",
        files={"model.onnx": b"weights"},
        zips={"vqi_app.zip": {"vqi_app/pkg/__init__.py": "X = 1\n", "shared/m.py": "Y = 2\n"}})
    root = tmp_path / "root"
    paths = deploy_component(root, load_built_recipe(build))
    assert paths.artifacts == root / "packages/artifacts/t.App/1.0.0"
    assert (paths.artifacts / "model.onnx").read_bytes() == b"weights"
    assert (paths.artifacts / "vqi_app.zip").is_file()
    assert paths.decompressed == root / "packages/artifacts-unarchived/t.App/1.0.0"
    assert (paths.decompressed / "vqi_app/vqi_app/pkg/__init__.py").read_text() == "X = 1\n"
    assert (paths.decompressed / "vqi_app/shared/m.py").read_text() == "Y = 2\n"
    assert not (paths.decompressed / "model").exists()
    assert paths.work == root / "work/t.App" and paths.work.is_dir()


def test_redeploy_replaces_stale_files_but_keeps_work(tmp_path: Path) -> None:
    components = tmp_path / "components"
    root = tmp_path / "root"
    build = write_built_component(components, "t.App", zips={"a.zip": {"old.py": "1"}})
    paths = deploy_component(root, load_built_recipe(build))
    (paths.work / "state").write_text("keep")
    (build / "artifacts/t.App/1.0.0/a.zip").unlink()
    write_built_component(components, "t.App", zips={"a.zip": {"new.py": "2"}})
    paths = deploy_component(root, load_built_recipe(build))
    assert sorted(p.name for p in (paths.decompressed / "a").iterdir()) == ["new.py"]
    assert (paths.work / "state").read_text() == "keep"


@pytest.mark.parametrize("evil", ["../escape.txt", "/abs/escape.txt", "a/../../escape.txt",
                                  "C:/escape.txt"])
def test_zip_slip_is_refused_before_anything_is_written(tmp_path: Path, evil: str) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("fine.txt", "ok")
        handle.writestr(evil, "pwned")
    dest = tmp_path / "out" / "evil"
    with pytest.raises(DeployError, match="unsafe zip entry"):
        safe_unzip(archive, dest)
    assert not (dest / "fine.txt").exists()
    assert not (tmp_path / "out" / "escape.txt").exists()
    assert not (tmp_path / "escape.txt").exists()


def test_zip_symlink_entry_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr(info, "/etc/passwd")
    with pytest.raises(DeployError, match="symlink"):
        safe_unzip(archive, tmp_path / "out")


def test_artifact_files_take_their_permission_not_the_zips_modes(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("tool.sh")
    info.external_attr = (0o100777 << 16)
    build = write_built_component(tmp_path / "components", "t.App",
                                  files={"model.onnx": b"w"}, zips={"a.zip": {"pkg/m.py": "1"}})
    recipe = load_built_recipe(build)
    with zipfile.ZipFile(build / "artifacts/t.App/1.0.0/a.zip", "a") as handle:
        handle.writestr(info, "#!/bin/sh\n")
    paths = deploy_component(tmp_path / "root", recipe)
    owner_write = 0 if os.geteuid() == 0 else 0o200  # kept without root, so cleanup works
    for file in (paths.artifacts / "model.onnx", paths.decompressed / "a/tool.sh",
                 paths.decompressed / "a/pkg/m.py"):
        assert stat.S_IMODE(file.stat().st_mode) == 0o440 | owner_write, file
    assert stat.S_IMODE((paths.decompressed / "a/pkg").stat().st_mode) == 0o755
    assert stat.S_IMODE(paths.work.stat().st_mode) == 0o700


def test_read_all_and_execute_permissions_widen_the_mode(tmp_path: Path) -> None:
    build = write_built_component(tmp_path / "components", "t.App", files={"run.sh": b"x"})
    recipe = load_built_recipe(build)
    recipe.artifacts[0] = dataclasses.replace(recipe.artifacts[0], read="ALL", execute="OWNER")
    paths = deploy_component(tmp_path / "root", recipe)
    owner_write = 0 if os.geteuid() == 0 else 0o200
    assert stat.S_IMODE((paths.artifacts / "run.sh").stat().st_mode) == 0o554 | owner_write


def test_missing_artifact_names_the_build_folder(tmp_path: Path) -> None:
    build = write_built_component(tmp_path, "t.App", files={"model.onnx": b"x"})
    (build / "artifacts/t.App/1.0.0/model.onnx").unlink()
    with pytest.raises(DeployError, match="model.onnx .* is not in .*build the component first"):
        deploy_component(tmp_path / "root", load_built_recipe(build))


def test_corrupt_zip_is_reported(tmp_path: Path) -> None:
    build = write_built_component(tmp_path, "t.App", files={"x.zip": b"not a zip"})
    recipe = load_built_recipe(build)
    recipe.artifacts[0] = type(recipe.artifacts[0])(uri="s3://b/x.zip", file_name="x.zip",
                                                    unarchive="ZIP")
    with pytest.raises(DeployError, match="not a readable zip"):
        deploy_component(tmp_path / "root", recipe)


def _set_digest(build: Path, file_name: str, data: bytes, algorithm: str = "SHA-256") -> None:
    """Put the Digest `gdk component publish` writes (base64 of the hash) into the built recipe."""
    digest = base64.b64encode(hashlib.new(algorithm.replace("-", "").lower(), data).digest())
    path = build / "recipes" / "recipe.yaml"
    recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    for artifact in recipe["Manifests"][0]["Artifacts"]:
        if artifact["URI"].endswith(f"/{file_name}"):
            artifact.update({"Digest": digest.decode(), "Algorithm": algorithm})
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")


def test_an_artifact_matching_its_recipe_digest_is_deployed(tmp_path: Path) -> None:
    build = write_built_component(tmp_path / "components", "t.App",
                                  files={"model.onnx": b"weights"})
    _set_digest(build, "model.onnx", b"weights")
    recipe = load_built_recipe(build)
    assert recipe.artifacts[0].digest  # the check below really has a Digest to compare
    paths = deploy_component(tmp_path / "root", recipe)
    assert (paths.artifacts / "model.onnx").read_bytes() == b"weights"


def test_a_tampered_artifact_is_refused_and_the_deployed_one_kept(tmp_path: Path) -> None:
    build = write_built_component(tmp_path / "components", "t.App",
                                  files={"model.onnx": b"weights"})
    _set_digest(build, "model.onnx", b"weights")
    root = tmp_path / "root"
    paths = deploy_component(root, load_built_recipe(build))
    (build / "artifacts/t.App/1.0.0/model.onnx").write_bytes(b"weightz")  # same size, one byte
    with pytest.raises(DeployError, match="model.onnx: digest does not match the recipe's Digest"):
        deploy_component(root, load_built_recipe(build))
    assert (paths.artifacts / "model.onnx").read_bytes() == b"weights"
