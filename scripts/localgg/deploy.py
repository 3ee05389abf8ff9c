"""Place a built component's artifacts under the runtime root, as a Greengrass deployment does.

Layout (same as /greengrass/v2): `packages/artifacts/<name>/<version>/<file>`,
`packages/artifacts-unarchived/<name>/<version>/<zip stem>/...` for `Unarchive: ZIP`, and
`work/<name>/` (kept across runs, like the nucleus keeps it across deployments). Modes and owners
follow the nucleus (see `users`): artifact files get their `Permission`'s mode, not the zip's,
and with a component user they and the 0700 work folder belong to that user.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from localgg.interpolate import ComponentPaths
from localgg.recipes import ArtifactSpec, ComponentRecipe
from localgg.supervisor import RunAs
from localgg.users import artifact_mode, chown_tree, is_root, set_artifact_modes


class DeployError(Exception):
    """An artifact is missing, corrupt or unsafe; nothing of it was unpacked."""


def component_paths(root: Path, name: str, version: str) -> ComponentPaths:
    return ComponentPaths(
        artifacts=root / "packages" / "artifacts" / name / version,
        decompressed=root / "packages" / "artifacts-unarchived" / name / version,
        work=root / "work" / name,
    )


def _check_digest(path: Path, spec: ArtifactSpec) -> None:
    if not spec.digest:
        return
    algorithm = (spec.algorithm or "SHA-256").replace("-", "").lower()
    try:
        hasher = hashlib.new(algorithm)
    except ValueError as exc:
        raise DeployError(f"{path.name}: unknown digest algorithm {spec.algorithm!r}") from exc
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    if base64.b64encode(hasher.digest()).decode() != spec.digest:
        raise DeployError(f"{path.name}: digest does not match the recipe's Digest")


def _safe_member_path(dest: Path, info: zipfile.ZipInfo) -> Path:
    """Where a zip member may go; refuse absolute paths, `..`, drive letters and symlinks."""
    name = info.filename.replace("\\", "/")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise DeployError(f"refusing unsafe zip entry {info.filename!r} (outside the target)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DeployError(f"refusing symlink zip entry {info.filename!r}")
    target = (dest / pure).resolve()
    if target != dest.resolve() and dest.resolve() not in target.parents:
        raise DeployError(f"refusing unsafe zip entry {info.filename!r} (outside the target)")
    return target


def safe_unzip(zip_path: Path, dest: Path) -> None:
    """Unpack `zip_path` into `dest`; every entry is checked before anything is written."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DeployError(f"{zip_path}: not a readable zip: {exc}") from exc
    with archive:
        dest.mkdir(parents=True, exist_ok=True)
        members = [(info, _safe_member_path(dest, info)) for info in archive.infolist()]
        for info, target in members:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)


def deploy_component(root: Path, recipe: ComponentRecipe,
                     run_as: RunAs | None = None) -> ComponentPaths:
    """Copy (fresh) and unpack the component's artifacts; create its 0700 work directory."""
    paths = component_paths(root, recipe.name, recipe.version)
    sources = []
    for spec in recipe.artifacts:
        source = recipe.build_artifacts_dir / spec.file_name
        if not source.is_file():
            raise DeployError(
                f"{recipe.name}: artifact {spec.file_name} (from {spec.uri}) is not in "
                f"{recipe.build_artifacts_dir}; build the component first"
            )
        _check_digest(source, spec)
        sources.append((spec, source))
    for directory in (paths.artifacts, paths.decompressed):
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True, mode=0o755)
        for folder in (directory, *directory.parents):
            if folder == root:
                break
            os.chmod(folder, 0o755)
    paths.work.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.work, 0o700)
    superuser = is_root()
    for spec, source in sources:
        target = paths.artifacts / spec.file_name
        shutil.copyfile(source, target)
        mode = artifact_mode(spec.read, spec.execute, superuser)
        if spec.unarchive == "ZIP":
            unpacked = paths.decompressed / Path(spec.file_name).stem
            safe_unzip(target, unpacked)
            set_artifact_modes(unpacked, mode)
        os.chmod(target, mode)
    if run_as is not None:
        chown_tree(paths.artifacts, run_as, include_root=False)
        chown_tree(paths.decompressed, run_as, include_root=False)
        chown_tree(paths.work, run_as)
    return paths
