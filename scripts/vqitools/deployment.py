"""Greengrass deployment documents for a site, from a small per-site settings file.

The output is the JSON `aws greengrassv2 create-deployment --cli-input-json file://...` takes: the
five components at chosen versions, Stream Manager, and each component's configuration update.
Setting keys are checked against the recipe defaults so a typo fails here, not on the line.

A deployment PATCHES what a device holds (KernelConfigResolver.resolveConfigurationToApply): a key
dropped from a site file would stay on the device. So the site file is made declarative: each of
this product's components gets `reset: [""]` (back to its recipe defaults) before its merge.
`aws.greengrass.Nucleus` and `aws.greengrass.StreamManager` get only a merge of the keys the site
names: resetting the nucleus's whole configuration would wipe the device's endpoints and region.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from localgg.builtins import BUILTIN_DEFAULTS, NUCLEUS, STREAM_MANAGER
from localgg.runtime import resolve_configuration
from vqitools.build import REPO_ROOT, BuildError, find_recipe, load_gdk_config, load_recipe
from vqitools.publish import published_version

COMPONENTS_DIR = REPO_ROOT / "components"
DEFAULT_STREAM_MANAGER_VERSION = "2.2.1"
RESET_ALL = [""]
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
TARGET_ARN = re.compile(r"^arn:aws[a-z-]*:iot:[a-z0-9-]+:\d{12}:(thing|thinggroup)/[\w:.-]+$")
# CreateDeployment's enums (the API refuses anything else, case included).
FAILURE_POLICIES = ("ROLLBACK", "DO_NOTHING")
# Each component's own configuration loader: the deployment's merged configuration must pass it,
# or the component fails on every device (ERRORED, BROKEN, the deployment rolled back).
LOADERS = {
    "com.example.vqi.ImageSource": ("image-source", "vqi_image_source.settings"),
    "com.example.vqi.Inference": ("inference", "vqi_inference.settings"),
    "com.example.vqi.Uploader": ("uploader", "vqi_uploader.settings"),
    "com.example.vqi.Dashboard": ("dashboard", "vqi_dashboard.settings"),
}


class SiteError(ValueError):
    """A site settings file that cannot become a deployment; the message says what to fix."""


def recipes(components_dir: Path = COMPONENTS_DIR) -> Dict[str, Dict[str, Any]]:
    found = {}
    for folder in sorted(p for p in components_dir.iterdir() if p.is_dir()):
        recipe = load_recipe(find_recipe(folder))
        recipe["_folder"] = folder
        found[recipe["ComponentName"]] = recipe
    return found


def load_site(path: Path) -> Dict[str, Any]:
    try:
        site = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SiteError(f"{path}: not valid YAML/JSON: {exc}") from exc
    if not isinstance(site, dict):
        raise SiteError(f"{path}: top level must be a mapping")
    return site


def configuration_merges(
    site: Dict[str, Any], known: Dict[str, Dict[str, Any]]
) -> Dict[str, Dict[str, Any]]:
    """Per-component merges from `site['configuration']`, keys checked against recipe defaults."""
    if "streamManagerConfiguration" in site:
        raise SiteError(f"streamManagerConfiguration is gone: put those keys under "
                        f"configuration.{STREAM_MANAGER}")
    merges: Dict[str, Dict[str, Any]] = {}
    for name, merge in (site.get("configuration") or {}).items():
        if name not in known and name not in BUILTIN_DEFAULTS:
            raise SiteError(f"configuration for unknown component {name!r}")
        if not isinstance(merge, dict):
            raise SiteError(f"configuration of {name} must be a mapping of recipe keys")
        defaults = BUILTIN_DEFAULTS[name] if name in BUILTIN_DEFAULTS else (
            known[name].get("ComponentConfiguration", {}).get("DefaultConfiguration", {}))
        unknown = sorted(set(merge) - set(defaults))
        if unknown:
            raise SiteError(
                f"{name}: unknown configuration keys {unknown}; known keys: {sorted(defaults)}"
            )
        merges[name] = merge
    return merges


def resolve_versions(
    site: Dict[str, Any], known: Dict[str, Dict[str, Any]], overrides: Dict[str, str]
) -> Dict[str, str]:
    """Chosen versions win; otherwise the version GDK last published from this checkout."""
    chosen = dict(site.get("versions") or {})
    chosen.update(overrides)
    versions = {}
    for name, recipe in known.items():
        version = chosen.get(name) or published_version(recipe["_folder"], name)
        if not version:
            raise SiteError(
                f"no version for {name}: give versions.{name} in the site file or --version "
                f"{name}=X.Y.Z (or run `gdk component publish` in {recipe['_folder'].name}/)"
            )
        if not SEMVER.match(str(version)):
            raise SiteError(f"{name}: version {version!r} is not semantic (X.Y.Z)")
        versions[name] = str(version)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise SiteError(f"versions given for unknown components {unknown}")
    return versions


def deployment_document(
    site: Dict[str, Any],
    version_overrides: Optional[Dict[str, str]] = None,
    components_dir: Path = COMPONENTS_DIR,
) -> Dict[str, Any]:
    target = site.get("targetArn", "")
    if not TARGET_ARN.match(str(target)):
        raise SiteError(
            "targetArn must be a thing or thing group ARN, e.g. "
            "arn:aws:iot:eu-west-1:123456789012:thinggroup/line-3"
        )
    known = recipes(components_dir)
    check_region(target, known)
    policy = str(site.get("failureHandlingPolicy", "ROLLBACK"))
    if policy not in FAILURE_POLICIES:
        raise SiteError(f"failureHandlingPolicy: {policy!r} is not one the API accepts; allowed: "
                        f"{', '.join(FAILURE_POLICIES)} (upper case)")
    updates = configuration_updates(site, known)
    check_values(updates, known, components_dir)
    versions = resolve_versions(site, known, version_overrides or {})
    versions[STREAM_MANAGER] = str(site.get("streamManagerVersion",
                                            DEFAULT_STREAM_MANAGER_VERSION))
    if NUCLEUS in updates:
        if not SEMVER.match(str(site.get("nucleusVersion", ""))):
            raise SiteError(f"configuration for {NUCLEUS} needs nucleusVersion: the version "
                            "your devices run (a deployment names every component it changes)")
        versions[NUCLEUS] = str(site["nucleusVersion"])
    components: Dict[str, Any] = {}
    for name in sorted(versions):
        entry: Dict[str, Any] = {"componentVersion": versions[name]}
        if name in updates:
            update = dict(updates[name])
            if "merge" in update:  # the API takes the merge as a JSON string, as the console
                update["merge"] = json.dumps(update["merge"], sort_keys=True)
            entry["configurationUpdate"] = update
        components[name] = entry
    return {
        "targetArn": target,
        "deploymentName": str(site.get("deploymentName") or f"vqi-{target.rsplit('/', 1)[-1]}"),
        "components": components,
        "deploymentPolicies": {
            "failureHandlingPolicy": policy,
            "componentUpdatePolicy": {"timeoutInSeconds": 120, "action": "NOTIFY_COMPONENTS"},
            "configurationValidationPolicy": {"timeoutInSeconds": 60},
        },
        "tags": {"product": "vqi"},
    }


def check_region(target: str, known: Dict[str, Dict[str, Any]]) -> None:
    """Greengrass components are regional: a deployment resolves them in its target's region,
    so it must be the region GDK publishes to (gdk-config.json publish.region)."""
    region = target.split(":")[3]
    try:
        published = {load_gdk_config(r["_folder"])[1]["publish"].get("region")
                     for r in known.values()}
    except BuildError as exc:
        raise SiteError(str(exc)) from None
    if published != {region}:
        raise SiteError(
            f"targetArn is in {region}, but the components are published to "
            f"{', '.join(sorted(str(p) for p in published))} (gdk-config.json publish.region): "
            f"the deployment could not resolve them. Target a thing or group in "
            f"{', '.join(sorted(str(p) for p in published))} (aws greengrassv2 create-deployment "
            f"--region {sorted(str(p) for p in published)[0]}), or publish to {region}")


def check_values(updates: Dict[str, Dict[str, Any]], known: Dict[str, Dict[str, Any]],
                 components_dir: Path = COMPONENTS_DIR) -> None:
    """Run each component's own configuration loader on what the device will hold after the
    deployment (recipe defaults, reset, merge: localgg's model of the nucleus's merge)."""
    for name, (folder, module_name) in LOADERS.items():
        if name not in known:
            continue
        for path in (str(REPO_ROOT), str(components_dir / folder)):  # shared/, the package
            if path not in sys.path:
                sys.path.insert(0, path)
        module = importlib.import_module(module_name)
        defaults = known[name].get("ComponentConfiguration", {}).get("DefaultConfiguration", {})
        merged = resolve_configuration(None, defaults, updates.get(name))
        try:
            config = module.parse(merged)
            if name == "com.example.vqi.Inference":  # against this checkout's model.json
                from vqi_inference.model import ModelError, read_spec

                try:
                    spec = read_spec(str(components_dir / "model"))
                except ModelError as exc:
                    raise SiteError(f"cannot check {name}'s thresholds: {exc}") from None
                module.resolve(config, spec)
        except (ValueError, TypeError) as exc:  # ConfigError
            if isinstance(exc, SiteError):
                raise
            raise SiteError(f"configuration of {name}: {exc} (its own loader refuses this; "
                            "every device would fail to start it)") from None


def configuration_updates(site: Dict[str, Any],
                          known: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Each component's configurationUpdate: reset + merge for ours, merge for the built-ins."""
    merges = configuration_merges(site, known)
    updates: Dict[str, Dict[str, Any]] = {}
    for name in sorted(known):
        updates[name] = {"reset": list(RESET_ALL)}
        if name in merges:
            updates[name]["merge"] = merges[name]
    for name in BUILTIN_DEFAULTS:
        if name in merges:
            updates[name] = {"merge": merges[name]}
    return updates


def local_overrides(site: Dict[str, Any], components_dir: Path = COMPONENTS_DIR) -> Dict[str, Any]:
    """The same configuration updates for the local runtime (merges as objects, not JSON text);
    each local run with a site file is a deployment onto what the runtime root holds."""
    return configuration_updates(site, recipes(components_dir))


def parse_version_args(values: List[str]) -> Dict[str, str]:
    out = {}
    for value in values:
        name, sep, version = value.partition("=")
        if not sep:
            raise SiteError(f"--version {value!r}: expected NAME=X.Y.Z")
        out[name] = version
    return out


# Keys that name folders on the machine: a local deployment keeps what the runtime root holds.
FOLDER_KEYS = {
    "com.example.vqi.ImageSource": ("InboxDir", "StateDir"),
    "com.example.vqi.Inference": ("AnnotatedImageDir",),
    "com.example.vqi.Uploader": ("StagingDir",),
    "com.example.vqi.Dashboard": ("ImageDirs", "TokenFile"),
}


def local_document(site: Dict[str, Any], held: Dict[str, Any],
                   components_dir: Path = COMPONENTS_DIR) -> Dict[str, Any]:
    """A deployment for a running local runtime (`./scripts/run-local deploy`): the components at
    their BUILT versions, the site's configuration (reset, then merge, as make-deployment writes
    it), and the folders this root already uses (they belong to the machine, not to the site)."""
    from localgg.recipes import discover

    updates = local_overrides(site, components_dir)
    for name, keys in FOLDER_KEYS.items():
        for key in keys:
            value = (held.get(name) or {}).get(key)
            if value:
                updates.setdefault(name, {}).setdefault("merge", {})[key] = value
    components: Dict[str, Any] = {}
    for recipe in discover(components_dir):
        components[recipe.name] = {"componentVersion": recipe.version}
    for name in BUILTIN_DEFAULTS:
        if name in updates:
            components[name] = {"componentVersion": "local"}
    for name, update in updates.items():
        if name in components:
            components[name]["configurationUpdate"] = update
    return {
        "deploymentName": str(site.get("deploymentName") or "local"),
        "components": components,
        "deploymentPolicies": {
            "failureHandlingPolicy": str(site.get("failureHandlingPolicy", "ROLLBACK"))},
    }
