"""Change detection rules, each checked on a small temporary git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vqitools.changes import changed_components

REPO = Path(__file__).resolve().parents[2]
ZIP_RECIPE = """\
RecipeFormatVersion: "2020-01-25"
ComponentName: com.example.{name}
Manifests:
  - Artifacts:
      - URI: s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/app.zip
        Unarchive: ZIP
"""
FILE_RECIPE = """\
RecipeFormatVersion: "2020-01-25"
ComponentName: com.example.{name}
Manifests:
  - Artifacts:
      - URI: s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/model.onnx
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def write(repo: Path, path: str, text: str) -> None:
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    for name, recipe in (("app", ZIP_RECIPE), ("worker", ZIP_RECIPE), ("model", FILE_RECIPE)):
        write(tmp_path, f"components/{name}/gdk-config.json", "{}")
        write(tmp_path, f"components/{name}/recipe.yaml", recipe.format(name=name))
        write(tmp_path, f"components/{name}/README.md", name)
    write(tmp_path, "shared/util.py", "x = 1\n")
    write(tmp_path, "gdk-config.json", "{}")
    write(tmp_path, "scripts/build-component", "# build\n")
    write(tmp_path, "README.md", "readme")
    commit(tmp_path, "initial")
    return tmp_path


def test_a_change_inside_a_component_selects_only_that_component(repo):
    base = git(repo, "rev-parse", "HEAD")
    write(repo, "components/worker/README.md", "changed")
    commit(repo, "docs")
    assert changed_components(repo, base) == ["components/worker"]


def test_a_shared_change_selects_components_that_vendor_it(repo):
    base = git(repo, "rev-parse", "HEAD")
    write(repo, "shared/util.py", "x = 2\n")
    commit(repo, "shared")
    assert changed_components(repo, base) == ["components/app", "components/worker"]


@pytest.mark.parametrize("path", ["gdk-config.json", "scripts/build-component",
                                  "scripts/vqitools/wheels.py"])
def test_a_global_build_input_selects_every_component(repo, path):
    base = git(repo, "rev-parse", "HEAD")
    write(repo, path, "changed\n")
    commit(repo, "global")
    assert changed_components(repo, base) == [
        "components/app", "components/model", "components/worker"]


def test_a_change_outside_components_and_build_inputs_selects_nothing(repo):
    base = git(repo, "rev-parse", "HEAD")
    write(repo, "README.md", "new readme")
    commit(repo, "docs")
    assert changed_components(repo, base) == []


def test_a_deleted_component_is_not_printed(repo):
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "rm", "-q", "-r", "components/worker")
    write(repo, "shared/util.py", "x = 3\n")
    commit(repo, "remove worker")
    assert changed_components(repo, base) == ["components/app"]


def test_a_new_component_is_selected(repo):
    base = git(repo, "rev-parse", "HEAD")
    write(repo, "components/extra/gdk-config.json", "{}")
    write(repo, "components/extra/recipe.yaml", FILE_RECIPE.format(name="extra"))
    commit(repo, "add extra")
    assert changed_components(repo, base) == ["components/extra"]


def test_head_defaults_to_the_checked_out_commit_and_spans_several_commits(repo):
    base = git(repo, "rev-parse", "HEAD")
    write(repo, "components/app/README.md", "1")
    commit(repo, "one")
    write(repo, "components/model/README.md", "2")
    commit(repo, "two")
    assert changed_components(repo, base) == ["components/app", "components/model"]
    assert changed_components(repo, base, head="HEAD~1") == ["components/app"]


@pytest.mark.parametrize("base", [None, "", "0" * 40, "no-such-ref"])
def test_no_usable_base_selects_every_component(repo, base):
    assert changed_components(repo, base) == [
        "components/app", "components/model", "components/worker"]


def test_the_cli_prints_one_folder_per_line(repo):
    base = git(repo, "rev-parse", "HEAD")
    write(repo, "shared/util.py", "x = 9\n")
    commit(repo, "shared")
    out = subprocess.run([str(REPO / "scripts" / "changed-components"), "--base", base,
                          "--repo", str(repo)], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["components/app", "components/worker"]
