"""Which components must be rebuilt between two git revisions.

A component is rebuilt when a file under its folder changed, when shared/ changed and the
component vendors it (it has a zip artifact), or when a build input every component shares changed.
Components deleted at the head revision are never printed: there is nothing left to build.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterable, List, Optional

import yaml

from vqitools.build import BuildError, vendors_shared

COMPONENTS = "components/"
SHARED = "shared/"
# Inputs of every build: the build script and its helpers, monorepo-wide GDK settings, pins.
GLOBAL_INPUTS = (
    "gdk-config.json",
    "scripts/build-component",
    "scripts/vqitools/build.py",
    "scripts/vqitools/wheels.py",
)
NULL_REVISIONS = {"", "0" * 40}


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def components_at(repo: Path, rev: str) -> List[str]:
    """Component folders (components/<x>) that have a gdk-config.json at `rev`."""
    listing = _git(repo, "ls-tree", "-r", "--name-only", rev, "--", COMPONENTS)
    folders = set()
    for path in listing.splitlines():
        parts = path.split("/")
        if len(parts) == 3 and parts[2] == "gdk-config.json":
            folders.add("/".join(parts[:2]))
    return sorted(folders)


def vendors_shared_at(repo: Path, rev: str, folder: str) -> bool:
    """build.vendors_shared for the recipe at `rev`; True when it cannot tell (no readable recipe),
    so the build reports the problem instead of being skipped."""
    for recipe_name in ("recipe.yaml", "recipe.yml", "recipe.json"):
        try:
            text = _git(repo, "show", f"{rev}:{folder}/{recipe_name}")
        except RuntimeError:
            continue
        try:
            recipe = yaml.safe_load(text) or {}
            return vendors_shared(recipe) if isinstance(recipe, dict) else True
        except (yaml.YAMLError, BuildError, AttributeError, TypeError):
            return True
    return True


def changed_files(repo: Path, base: str, head: str) -> List[str]:
    out = _git(repo, "diff", "--name-only", "--no-renames", f"{base}", f"{head}", "--")
    return [line for line in out.splitlines() if line]


def select(
    folders: Iterable[str], files: Iterable[str], vendors: dict
) -> List[str]:
    files = list(files)
    if any(f in GLOBAL_INPUTS for f in files):
        return sorted(folders)
    shared_changed = any(f.startswith(SHARED) for f in files)
    chosen = []
    for folder in folders:
        if any(f.startswith(folder + "/") for f in files) or (shared_changed and vendors[folder]):
            chosen.append(folder)
    return sorted(chosen)


def changed_components(repo: Path, base: Optional[str], head: str = "HEAD") -> List[str]:
    head_rev = _git(repo, "rev-parse", "--verify", f"{head}^{{commit}}").strip()
    folders = components_at(repo, head_rev)
    if base is None or base.strip() in NULL_REVISIONS:
        return folders  # first build (no previous commit): everything
    try:
        base_rev = _git(repo, "rev-parse", "--verify", f"{base}^{{commit}}").strip()
    except RuntimeError:
        return folders  # unknown base (e.g. force-push): rebuild everything, never skip
    files = changed_files(repo, base_rev, head_rev)
    vendors = {f: vendors_shared_at(repo, head_rev, f) for f in folders}
    return select(folders, files, vendors)
