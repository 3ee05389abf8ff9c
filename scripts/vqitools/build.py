"""Build one component folder into the layout `gdk component publish` consumes.

GDK's custom build system only runs a command inside the component folder; that command must write
`greengrass-build/recipes/<recipe>` and `greengrass-build/artifacts/<name>/<version>/`. This module
is that command for every component of the monorepo: it vendors the top-level `shared/` package
into each Python component's zip, and builds zips byte-for-byte reproducibly so an unchanged
component keeps an unchanged artifact digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT / "shared"
BUILD_DIR = "greengrass-build"
URI_PREFIX = "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
SKIP_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", BUILD_DIR}
SKIP_SUFFIXES = (".pyc", ".pyo")


class BuildError(Exception):
    """A component that cannot be built; the message says what to fix."""


@dataclass
class BuiltArtifact:
    name: str
    path: Path
    size: int
    sha256: str


def load_gdk_config(component_dir: Path) -> Tuple[str, Dict[str, Any]]:
    path = component_dir / "gdk-config.json"
    if not path.is_file():
        raise BuildError(f"{path}: missing (every component folder is a GDK project)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BuildError(f"{path}: not valid JSON: {exc}") from exc
    components = config.get("component")
    if not isinstance(components, dict) or len(components) != 1:
        raise BuildError(f"{path}: 'component' must hold exactly one component")
    ((name, settings),) = components.items()
    for key in ("author", "version", "build", "publish"):
        if key not in settings:
            raise BuildError(f"{path}: component {name} lacks required key {key!r}")
    return name, settings


def find_recipe(component_dir: Path) -> Path:
    candidates = [component_dir / n for n in ("recipe.yaml", "recipe.yml", "recipe.json")]
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise BuildError(f"{component_dir}: no recipe.yaml or recipe.json")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise BuildError(f"{component_dir}: more than one recipe file ({names}); keep one")
    return found[0]


def load_recipe(path: Path) -> Dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        recipe = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise BuildError(f"{path}: malformed recipe: {exc}") from exc
    if not isinstance(recipe, dict):
        raise BuildError(f"{path}: malformed recipe: top level must be a mapping")
    if str(recipe.get("RecipeFormatVersion")) != "2020-01-25":
        raise BuildError(f"{path}: RecipeFormatVersion must be '2020-01-25'")
    if not isinstance(recipe.get("Manifests", []), list):
        raise BuildError(f"{path}: Manifests must be a list")
    return recipe


def artifact_uris(recipe: Dict[str, Any]) -> List[Dict[str, Any]]:
    artifacts = []
    for manifest in recipe.get("Manifests") or []:
        for artifact in (manifest or {}).get("Artifacts") or []:
            if not isinstance(artifact, dict) or "URI" not in artifact:
                raise BuildError("every artifact needs a URI")
            artifacts.append(artifact)
    return artifacts


# Zips of data, not code: built from their folder alone (no shared/, no requirements.txt).
# The Model component's acceptance set, and its challenger model when it carries one.
DATA_ZIPS = frozenset({"samples.zip", "challenger.zip"})


def vendors_shared(recipe: Dict[str, Any]) -> bool:
    """A component vendors shared/ when one of its artifacts is a zip built from its code."""
    return any(str(a["URI"]).endswith(".zip") and str(a["URI"]).rsplit("/", 1)[-1] not in DATA_ZIPS
               for a in artifact_uris(recipe))


def _included(path: Path) -> bool:
    return not (
        path.name in SKIP_NAMES
        or path.name.startswith(".")
        or path.name.endswith(SKIP_SUFFIXES)
    )


def _walk(root: Path, arc_prefix: str) -> Iterator[Tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if _included(Path(d)))
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if not _included(path) or path.is_symlink():
                continue
            rel = path.relative_to(root).as_posix()
            yield f"{arc_prefix}/{rel}" if arc_prefix else rel, path


def write_reproducible_zip(entries: List[Tuple[str, Path]], dest: Path) -> None:
    """Zip with fixed timestamps, permissions and order: same sources, same bytes."""
    with zipfile.ZipFile(dest, "w") as zf:
        for arcname, path in sorted(entries, key=lambda e: e[0]):
            info = zipfile.ZipInfo(arcname, date_time=ZIP_EPOCH)
            mode = 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=9)


def zip_entries(component_dir: Path, package: str, extra_dirs: Optional[Dict[str, Path]] = None):
    package_dir = component_dir / package
    if not package_dir.is_dir():
        raise BuildError(
            f"missing artifact file: {package}.zip is built from the folder {package}/, "
            f"which {component_dir} does not have"
        )
    entries = list(_walk(package_dir, package))
    entries += list(_walk(SHARED_DIR, "shared"))
    requirements = component_dir / "requirements.txt"
    check_pinned(requirements)
    entries.append(("requirements.txt", requirements))
    for arc_prefix, folder in (extra_dirs or {}).items():
        entries += list(_walk(folder, arc_prefix))
    return entries


PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!_-]+\s*(;.*)?$")


def check_pinned(requirements: Path) -> None:
    """A device install must be repeatable: every requirement pinned to one exact version."""
    if not requirements.is_file():
        raise BuildError(f"missing {requirements}: a Python component pins its requirements")
    text = requirements.read_text(encoding="utf-8").replace("\\\n", " ")
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement = line.split(" --hash")[0].strip()
        if not PIN.match(requirement):
            raise BuildError(
                f"{requirements}:{number}: {requirement!r} is not pinned as name==version"
            )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


WheelBundler = Callable[[Path, Path], None]


def build_component(
    component_dir: Path, bundle_wheels: Optional[WheelBundler] = None
) -> Tuple[Path, List[BuiltArtifact]]:
    """Build `component_dir`; returns the built recipe path and the artifacts written.

    Everything is written into a temporary folder beside the final one and renamed into place at
    the end, so a failed build leaves no greengrass-build/ at all (a stale one is removed first,
    as GDK does, so it can never be published by mistake).
    """
    component_dir = component_dir.resolve()
    final = component_dir / BUILD_DIR
    if final.exists():  # also the empty skeleton `gdk component build` creates before calling us
        shutil.rmtree(final)
    name, settings = load_gdk_config(component_dir)
    recipe_path = find_recipe(component_dir)
    recipe = load_recipe(recipe_path)
    if recipe.get("ComponentName") != name:
        raise BuildError(
            f"name mismatch: recipe ComponentName {recipe.get('ComponentName')!r} != "
            f"gdk-config.json component {name!r}"
        )
    version = str(settings["version"])
    staging = Path(tempfile.mkdtemp(prefix=f".{BUILD_DIR}.", dir=component_dir))
    try:
        artifact_dir = staging / "artifacts" / name / version
        artifact_dir.mkdir(parents=True)
        built: List[BuiltArtifact] = []
        for artifact in artifact_uris(recipe):
            uri = str(artifact["URI"])
            if not uri.startswith(URI_PREFIX) or "/" in uri[len(URI_PREFIX):]:
                raise BuildError(f"artifact URI {uri!r} must be {URI_PREFIX}<file>")
            filename = uri[len(URI_PREFIX):]
            dest = artifact_dir / filename
            if filename in DATA_ZIPS:
                folder = component_dir / filename[:-4]
                if not folder.is_dir():
                    raise BuildError(f"missing artifact folder: {folder} (named by {uri})")
                write_reproducible_zip(list(_walk(folder, "")), dest)
            elif filename.endswith(".zip"):
                extra: Dict[str, Path] = {}
                if bundle_wheels is not None and (component_dir / "requirements.txt").is_file():
                    wheel_dir = staging / "wheels"
                    bundle_wheels(component_dir / "requirements.txt", wheel_dir)
                    extra["wheels"] = wheel_dir
                write_reproducible_zip(zip_entries(component_dir, filename[:-4], extra), dest)
            else:
                source = component_dir / filename
                if not source.is_file():
                    raise BuildError(f"missing artifact file: {source} (named by {uri})")
                shutil.copyfile(source, dest)
            built.append(BuiltArtifact(filename, dest, dest.stat().st_size, sha256_file(dest)))
        shutil.rmtree(staging / "wheels", ignore_errors=True)
        recipe["ComponentName"] = name
        recipe["ComponentVersion"] = version
        recipe["ComponentPublisher"] = settings["author"]
        recipes_dir = staging / "recipes"
        recipes_dir.mkdir()
        out_recipe = recipes_dir / recipe_path.name
        if recipe_path.suffix == ".json":
            out_recipe.write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
        else:
            out_recipe.write_text(
                yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True, width=100),
                encoding="utf-8",
            )
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return (
        final / "recipes" / recipe_path.name,
        [
            BuiltArtifact(a.name, final / "artifacts" / name / version / a.name, a.size, a.sha256)
            for a in built
        ],
    )
