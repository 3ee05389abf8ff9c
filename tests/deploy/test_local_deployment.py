"""`./scripts/run-local deploy`: the document a running local runtime gets from a site file."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.localgg.lifecycle_fixtures import write_built_component
from vqitools.deployment import local_document

REPO = Path(__file__).resolve().parents[2]
IMAGE_SOURCE = "com.example.vqi.ImageSource"


def components(tmp_path: Path) -> Path:
    """ImageSource's real recipe, built at version 1.0.7 (as a developer's gdk-config says)."""
    folder = tmp_path / "components"
    recipe = yaml.safe_load((REPO / "components/image-source/recipe.yaml").read_text())
    write_built_component(folder, IMAGE_SOURCE, {}, version="1.0.7",
                          configuration=recipe["ComponentConfiguration"]["DefaultConfiguration"])
    shutil.copy(REPO / "components/image-source/recipe.yaml", folder / "ImageSource")
    return folder


def test_a_local_deployment_takes_the_built_versions_and_keeps_the_roots_folders(
        tmp_path: Path) -> None:
    site = {"configuration": {IMAGE_SOURCE: {"StabilitySeconds": 2}}}
    held = {IMAGE_SOURCE: {"InboxDir": "/srv/cam/inbox", "StateDir": "/srv/cam/state",
                           "StabilitySeconds": 0.5}}
    doc = local_document(site, held, components(tmp_path))
    entry = doc["components"][IMAGE_SOURCE]
    assert entry["componentVersion"] == "1.0.7"
    update = entry["configurationUpdate"]
    assert update["reset"] == [""]
    assert update["merge"] == {"StabilitySeconds": 2, "InboxDir": "/srv/cam/inbox",
                               "StateDir": "/srv/cam/state"}
    assert doc["deploymentPolicies"] == {"failureHandlingPolicy": "ROLLBACK"}


def test_the_sites_failure_policy_is_passed_on(tmp_path: Path) -> None:
    doc = local_document({"failureHandlingPolicy": "DO_NOTHING"}, {}, components(tmp_path))
    assert doc["deploymentPolicies"]["failureHandlingPolicy"] == "DO_NOTHING"
