"""Keep every component's gdk-config.json in step with the root gdk-config.json.

GDK reads gdk-config.json only from the folder it runs in, one component per file, so the
monorepo-wide settings (gdk_version, author, version policy, build command, publish bucket,
region, options) live once at the root and are copied into each component folder by
`scripts/sync-gdk-config`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

from vqitools.build import REPO_ROOT, find_recipe, load_recipe

ROOT_CONFIG = REPO_ROOT / "gdk-config.json"
COMPONENTS_DIR = REPO_ROOT / "components"


def component_dirs(components_dir: Path = COMPONENTS_DIR) -> List[Path]:
    return sorted(p for p in components_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def expected_config(root: Dict[str, Any], component_name: str) -> Dict[str, Any]:
    return {
        "component": {
            component_name: {
                "author": root["author"],
                "version": root["version"],
                "build": root["build"],
                "publish": root["publish"],
            }
        },
        "gdk_version": root["gdk_version"],
    }


def render(config: Dict[str, Any]) -> str:
    return json.dumps(config, indent=2) + "\n"


def _differing(root_config: Path, components_dir: Path) -> Dict[Path, str]:
    """gdk-config.json files that differ from the root settings, with the text they should have."""
    root = json.loads(root_config.read_text(encoding="utf-8"))
    differing = {}
    for folder in component_dirs(components_dir):
        name = load_recipe(find_recipe(folder))["ComponentName"]
        path = folder / "gdk-config.json"
        wanted = render(expected_config(root, name))
        if not path.is_file() or path.read_text(encoding="utf-8") != wanted:
            differing[path] = wanted
    return differing


def drift(root_config: Path = ROOT_CONFIG, components_dir: Path = COMPONENTS_DIR) -> List[str]:
    """Components whose gdk-config.json differs from what the root settings imply."""
    return [path.parent.name for path in _differing(root_config, components_dir)]


def sync(root_config: Path = ROOT_CONFIG, components_dir: Path = COMPONENTS_DIR) -> List[str]:
    written = []
    for path, wanted in _differing(root_config, components_dir).items():
        path.write_text(wanted, encoding="utf-8")
        written.append(path.parent.name)
    return written
