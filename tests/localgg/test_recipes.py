"""Built recipes are loaded, their manifest chosen for this host, and ordered by dependencies."""

from __future__ import annotations

from pathlib import Path

import pytest

from localgg.recipes import (
    RecipeError,
    discover,
    host_platform,
    load_built_recipe,
    platform_matches,
    start_order,
)

from .lifecycle_fixtures import write_built_component

X86 = {"os": "linux", "architecture": "amd64"}
ARM = {"os": "linux", "architecture": "aarch64"}


def names(recipes) -> list[str]:
    return [r.name for r in recipes]


def test_host_platform_uses_greengrass_architecture_names() -> None:
    host = host_platform()
    assert host["os"] == "linux"
    assert host["architecture"] in {"amd64", "aarch64", "arm", "x86"}


@pytest.mark.parametrize(
    ("spec", "host", "expected"),
    [
        ({"os": "linux", "architecture": "/^(amd64|aarch64)$/"}, X86, True),
        ({"os": "linux", "architecture": "/^(amd64|aarch64)$/"}, ARM, True),
        ({"os": "linux", "architecture": "/^(amd64|aarch64)$/"}, {"os": "linux",
                                                                  "architecture": "arm"}, False),
        ({"os": "linux", "architecture": "amd64"}, ARM, False),
        ({"os": "windows"}, X86, False),
        ({"os": "*", "architecture": "*"}, X86, True),
        ({"os": "/lin.*/"}, X86, True),
        ({"runtime": "aws_nucleus_lite"}, X86, False),
        (None, X86, True),
    ],
)
def test_platform_matching(spec, host, expected) -> None:
    assert platform_matches(spec, host) is expected


def test_first_manifest_matching_the_host_is_selected(tmp_path: Path) -> None:
    build = write_built_component(tmp_path, "t.Multi", manifests=[
        {"Platform": {"os": "windows"}, "Lifecycle": {"Run": "echo windows"}},
        {"Platform": {"os": "linux", "architecture": "aarch64"}, "Lifecycle": {"Run": "echo arm"}},
        {"Platform": {"os": "linux", "architecture": "/amd64|aarch64/"},
         "Lifecycle": {"Run": "echo any"}},
    ])
    assert load_built_recipe(build, ARM).lifecycle == {"Run": "echo arm"}
    assert load_built_recipe(build, X86).lifecycle == {"Run": "echo any"}


def test_no_matching_manifest_is_a_clear_error(tmp_path: Path) -> None:
    build = write_built_component(tmp_path, "t.Win", manifests=[
        {"Platform": {"os": "windows"}, "Lifecycle": {"Run": "echo"}}])
    with pytest.raises(RecipeError, match="t.Win: no manifest matches"):
        load_built_recipe(build, X86)


def test_built_recipe_fields_and_artifact_location(tmp_path: Path) -> None:
    build = write_built_component(
        tmp_path, "t.Parts", {"Run": "true"}, version="1.2.3",
        configuration={"A": 1}, dependencies={"aws.greengrass.StreamManager": "SOFT"},
        files={"model.onnx": b"x"}, zips={"app.zip": {"a.py": "x"}})
    recipe = load_built_recipe(build)
    assert (recipe.name, recipe.version) == ("t.Parts", "1.2.3")
    assert recipe.default_configuration == {"A": 1}
    assert recipe.dependency_type("aws.greengrass.StreamManager") == "SOFT"
    assert [(a.file_name, a.unarchive) for a in recipe.artifacts] == [
        ("model.onnx", "NONE"), ("app.zip", "ZIP")]
    assert recipe.build_artifacts_dir == build / "artifacts" / "t.Parts" / "1.2.3"


def test_discover_requires_a_build(tmp_path: Path) -> None:
    (tmp_path / "unbuilt").mkdir()
    assert discover(tmp_path) == []
    (tmp_path / "broken" / "greengrass-build" / "recipes").mkdir(parents=True)
    with pytest.raises(RecipeError, match="no built recipe"):
        discover(tmp_path)


def test_dependencies_start_first(tmp_path: Path) -> None:
    write_built_component(tmp_path, "t.App", dependencies={"t.Lib": "HARD", "t.Model": "SOFT"})
    write_built_component(tmp_path, "t.Lib", dependencies={"t.Model": "HARD"})
    write_built_component(tmp_path, "t.Model")
    write_built_component(tmp_path, "t.Alone")
    assert names(start_order(discover(tmp_path))) == ["t.Alone", "t.Model", "t.Lib", "t.App"]


def test_only_keeps_the_named_components_and_their_dependencies(tmp_path: Path) -> None:
    write_built_component(tmp_path, "t.App", dependencies={"t.Lib": "HARD"})
    write_built_component(tmp_path, "t.Lib")
    write_built_component(tmp_path, "t.Other")
    assert names(start_order(discover(tmp_path), only=["t.App"])) == ["t.Lib", "t.App"]
    with pytest.raises(RecipeError, match="unknown component.*t.Nope"):
        start_order(discover(tmp_path), only=["t.Nope"])


def test_runtime_provided_dependencies_need_no_recipe(tmp_path: Path) -> None:
    write_built_component(tmp_path, "t.Up", dependencies={
        "aws.greengrass.StreamManager": "HARD", "aws.greengrass.Nucleus": "SOFT"})
    assert names(start_order(discover(tmp_path))) == ["t.Up"]


def test_missing_dependency_is_named(tmp_path: Path) -> None:
    write_built_component(tmp_path, "t.App", dependencies={"t.Ghost": "HARD"})
    with pytest.raises(RecipeError, match="t.App depends on t.Ghost"):
        start_order(discover(tmp_path))


def test_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    write_built_component(tmp_path, "t.A", dependencies={"t.B": "HARD"})
    write_built_component(tmp_path, "t.B", dependencies={"t.C": "SOFT"})
    write_built_component(tmp_path, "t.C", dependencies={"t.A": "HARD"})
    with pytest.raises(RecipeError, match=r"dependency cycle: t.A -> t.B -> t.C -> t.A$"):
        start_order(discover(tmp_path))


def test_same_component_built_twice_is_an_error(tmp_path: Path) -> None:
    write_built_component(tmp_path / "one", "t.Dup")
    write_built_component(tmp_path / "two", "t.Dup")
    for build in (tmp_path / "one").glob("*/greengrass-build"):
        target = tmp_path / "all" / "first"
        target.mkdir(parents=True)
        build.rename(target / "greengrass-build")
    for build in (tmp_path / "two").glob("*/greengrass-build"):
        target = tmp_path / "all" / "second"
        target.mkdir(parents=True)
        build.rename(target / "greengrass-build")
    with pytest.raises(RecipeError, match="t.Dup is built twice"):
        discover(tmp_path / "all")
