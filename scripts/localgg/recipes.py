"""Load BUILT component recipes and order them the way the Greengrass nucleus would.

The local runtime reads what `gdk component build` (here: scripts/build-component) wrote, never the
source recipe, so what runs locally is what gets published: `components/*/greengrass-build/recipes/
recipe.yaml|json` plus `greengrass-build/artifacts/<ComponentName>/<version>/`.
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Components the local runtime provides itself: a recipe may depend on them without a recipe file.
RUNTIME_PROVIDED = frozenset({"aws.greengrass.Nucleus", "aws.greengrass.StreamManager"})

# uname machine -> Greengrass platform architecture (as the nucleus reports it).
_ARCH_BY_MACHINE = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i386": "x86",
    "i686": "x86",
}


class RecipeError(Exception):
    """A recipe or the dependency graph cannot be used; the message names the culprit."""


@dataclass(frozen=True)
class ArtifactSpec:
    """One artifact of the selected manifest, resolved to a file in the build output."""

    uri: str
    file_name: str
    unarchive: str = "NONE"
    execute: str = "NONE"  # Permission.Execute: NONE | OWNER | ALL
    read: str = "OWNER"  # Permission.Read: NONE | OWNER | ALL
    digest: str | None = None
    algorithm: str | None = None


@dataclass(frozen=True)
class Dependency:
    name: str
    version_requirement: str = "*"
    dependency_type: str = "HARD"


@dataclass
class ComponentRecipe:
    """What the lifecycle runner needs from one built recipe (the host's manifest selected)."""

    name: str
    version: str
    recipe_path: Path
    build_artifacts_dir: Path
    default_configuration: dict[str, Any]
    dependencies: list[Dependency]
    artifacts: list[ArtifactSpec]
    lifecycle: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def dependency_type(self, name: str) -> str | None:
        for dep in self.dependencies:
            if dep.name == name:
                return dep.dependency_type
        return None


def host_platform() -> dict[str, str]:
    """The platform attributes of this host as the nucleus would report them."""
    machine = platform.machine().lower()
    return {"os": platform.system().lower(), "architecture": _ARCH_BY_MACHINE.get(machine, machine)}


def _value_matches(expected: Any, actual: str | None) -> bool:
    text = str(expected)
    if text == "*":
        return True
    if actual is None:
        return False
    if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
        try:
            return re.fullmatch(text[1:-1], actual) is not None
        except re.error as exc:
            raise RecipeError(f"invalid platform regex {text!r}: {exc}") from exc
    return text == actual


def platform_matches(platform_spec: dict[str, Any] | None, host: dict[str, str]) -> bool:
    """True when every attribute of a manifest's Platform matches the host ("*" and /re/ too)."""
    if not platform_spec:
        return True
    return all(_value_matches(value, host.get(key)) for key, value in platform_spec.items())


def _artifact_file_name(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise RecipeError(f"artifact URI {uri!r} names no file")
    return name


def _parse_artifact(component: str, raw: Any) -> ArtifactSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("URI") or raw.get("Uri"), str):
        raise RecipeError(f"{component}: artifact without a URI: {raw!r}")
    uri = raw.get("URI") or raw.get("Uri")
    if uri.startswith("docker:"):
        raise RecipeError(f"{component}: docker artifacts are not supported locally ({uri})")
    unarchive = str(raw.get("Unarchive", "NONE")).upper()
    if unarchive not in ("NONE", "ZIP"):
        raise RecipeError(f"{component}: unsupported Unarchive {unarchive!r} for {uri}")
    permission = raw.get("Permission") or {}
    return ArtifactSpec(
        uri=uri,
        file_name=_artifact_file_name(uri),
        unarchive=unarchive,
        execute=str(permission.get("Execute", "NONE")).upper(),
        read=str(permission.get("Read", "OWNER")).upper(),
        digest=raw.get("Digest"),
        algorithm=raw.get("Algorithm"),
    )


def _parse_dependencies(component: str, raw: Any) -> list[Dependency]:
    if raw in (None, {}):
        return []
    if not isinstance(raw, dict):
        raise RecipeError(f"{component}: ComponentDependencies must be a mapping")
    deps = []
    for name, spec in raw.items():
        spec = spec or {}
        dep_type = str(spec.get("DependencyType", "HARD")).upper()
        if dep_type not in ("HARD", "SOFT"):
            raise RecipeError(f"{component}: dependency {name} has DependencyType {dep_type!r}")
        deps.append(Dependency(str(name), str(spec.get("VersionRequirement", "*")), dep_type))
    return deps


def parse_recipe(
    raw: dict[str, Any], recipe_path: Path, artifacts_root: Path, host: dict[str, str] | None = None
) -> ComponentRecipe:
    """Turn a recipe mapping into a ComponentRecipe for the host's first matching manifest."""
    host = host or host_platform()
    name = raw.get("ComponentName")
    version = raw.get("ComponentVersion")
    if not isinstance(name, str) or not name:
        raise RecipeError(f"{recipe_path}: recipe has no ComponentName")
    if version is None:
        raise RecipeError(f"{recipe_path}: recipe {name} has no ComponentVersion")
    version = str(version)
    manifests = raw.get("Manifests") or []
    selected = next(
        (m for m in manifests if platform_matches((m or {}).get("Platform"), host)), None
    )
    if manifests and selected is None:
        raise RecipeError(f"{name}: no manifest matches this host's platform {host}")
    selected = selected or {}
    lifecycle = selected.get("Lifecycle")
    if lifecycle is None:
        lifecycle = raw.get("Lifecycle") or {}
    if not isinstance(lifecycle, dict):
        raise RecipeError(f"{name}: Lifecycle must be a mapping")
    configuration = (raw.get("ComponentConfiguration") or {}).get("DefaultConfiguration") or {}
    if not isinstance(configuration, dict):
        raise RecipeError(f"{name}: DefaultConfiguration must be a mapping")
    artifacts = [_parse_artifact(name, a) for a in selected.get("Artifacts") or []]
    return ComponentRecipe(
        name=name,
        version=version,
        recipe_path=recipe_path,
        build_artifacts_dir=artifacts_root / name / version,
        default_configuration=configuration,
        dependencies=_parse_dependencies(name, raw.get("ComponentDependencies")),
        artifacts=artifacts,
        lifecycle=lifecycle,
        raw=raw,
    )


def load_built_recipe(build_dir: Path, host: dict[str, str] | None = None) -> ComponentRecipe:
    """Load `<build_dir>/recipes/recipe.(yaml|json)`; artifacts are in `<build_dir>/artifacts`."""
    recipes_dir = build_dir / "recipes"
    candidates = sorted(p for p in recipes_dir.glob("*") if p.suffix in (".yaml", ".yml", ".json"))
    if not candidates:
        raise RecipeError(f"{build_dir}: no built recipe in {recipes_dir} (run the build first)")
    if len(candidates) > 1:
        raise RecipeError(f"{build_dir}: several recipes in {recipes_dir}: {candidates}")
    path = candidates[0]
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc}") from exc
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: recipe is not a mapping")
    return parse_recipe(raw, path, build_dir / "artifacts", host)


def discover(components_dir: Path, host: dict[str, str] | None = None) -> list[ComponentRecipe]:
    """Every built component under `components_dir/*/greengrass-build/`, sorted by name."""
    if not components_dir.is_dir():
        raise RecipeError(f"components directory {components_dir} does not exist")
    found: dict[str, ComponentRecipe] = {}
    for build_dir in sorted(components_dir.glob("*/greengrass-build")):
        recipe = load_built_recipe(build_dir, host)
        if recipe.name in found:
            raise RecipeError(
                f"{recipe.name} is built twice: {found[recipe.name].recipe_path} and "
                f"{recipe.recipe_path}"
            )
        found[recipe.name] = recipe
    return [found[name] for name in sorted(found)]


def start_order(
    recipes: list[ComponentRecipe], only: list[str] | None = None
) -> list[ComponentRecipe]:
    """Dependencies first (ties by name); `only` keeps those components and what they depend on.

    Missing dependencies and cycles raise RecipeError naming the components involved.
    """
    by_name = {r.name: r for r in recipes}
    wanted = set(by_name)
    if only:
        unknown = sorted(set(only) - set(by_name))
        if unknown:
            raise RecipeError(f"unknown component(s) {unknown}; built: {sorted(by_name)}")
        wanted = set()
        stack = list(only)
        while stack:
            name = stack.pop()
            if name in wanted or name not in by_name:
                continue  # runtime-provided or missing: reported by the check below
            wanted.add(name)
            stack.extend(d.name for d in by_name[name].dependencies)
    for name in sorted(wanted):
        for dep in by_name[name].dependencies:
            if dep.name not in by_name and dep.name not in RUNTIME_PROVIDED:
                raise RecipeError(
                    f"{name} depends on {dep.name} ({dep.dependency_type}), which is not built "
                    f"under the components directory"
                )
    ordered: list[ComponentRecipe] = []
    marks: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if marks.get(name) == "done":
            return
        if marks.get(name) == "active":
            cycle = path[path.index(name):]  # path already ends with name
            raise RecipeError("dependency cycle: " + " -> ".join(cycle))
        marks[name] = "active"
        for dep in sorted(d.name for d in by_name[name].dependencies):
            if dep in by_name:
                visit(dep, path + [dep])
        marks[name] = "done"
        ordered.append(by_name[name])

    for name in sorted(wanted):
        visit(name, [name])
    return ordered
