"""Monorepo-wide GDK settings live once in the root gdk-config.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vqitools.gdkconfig import drift, sync

REPO = Path(__file__).resolve().parents[2]


def copy_repo_configs(tmp_path: Path) -> tuple:
    root = tmp_path / "gdk-config.json"
    shutil.copy(REPO / "gdk-config.json", root)
    components = tmp_path / "components"
    for folder in (REPO / "components").iterdir():
        if folder.is_dir():
            (components / folder.name).mkdir(parents=True)
            shutil.copy(folder / "recipe.yaml", components / folder.name)
            shutil.copy(folder / "gdk-config.json", components / folder.name)
    return root, components


def test_component_configs_match_the_root_settings():
    assert drift() == [], "run scripts/sync-gdk-config"


def test_changing_a_root_setting_is_reported_as_drift_until_synced(tmp_path):
    root, components = copy_repo_configs(tmp_path)
    settings = json.loads(root.read_text())
    settings["publish"]["region"] = "eu-west-1"
    root.write_text(json.dumps(settings))
    assert drift(root, components) == sorted(p.name for p in components.iterdir())
    sync(root, components)
    assert drift(root, components) == []
    config = json.loads((components / "inference" / "gdk-config.json").read_text())
    assert config["component"]["com.example.vqi.Inference"]["publish"]["region"] == "eu-west-1"


def test_a_hand_edited_component_config_is_drift(tmp_path):
    root, components = copy_repo_configs(tmp_path)
    path = components / "uploader" / "gdk-config.json"
    config = json.loads(path.read_text())
    config["component"]["com.example.vqi.Uploader"]["author"] = "Someone Else"
    path.write_text(json.dumps(config, indent=2) + "\n")
    assert drift(root, components) == ["uploader"]
