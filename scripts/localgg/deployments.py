"""Deployments into a running local runtime, applied and rolled back the way the nucleus does.

A deployment document has the shape of CreateDeployment's input (what `scripts/make-deployment`
writes): `components` {name: {componentVersion, configurationUpdate}} and `deploymentPolicies`
{failureHandlingPolicy: ROLLBACK (default) | DO_NOTHING}. A version that is not the running one
must be built in the deployment's components folder (the local stand-in for the cloud's
component store, as `greengrass-cli deployment create --recipeDir --artifactDir` takes it).

Applying it (activator/DefaultActivator.java, DeploymentConfigMerger.java):
1. Each component's configuration is computed as at start (held, `reset`, defaults, `merge`) and
   replaced in the IPC server, so subscribers hear what changed.
2. A component whose version or Install step changed, or that was BROKEN, is reinstalled; one
   whose other lifecycle steps or environment changed (a dependency's new artifact path, say)
   is restarted; the rest only see their new configuration (GenericExternalService's listener).
   Changed components are handled in dependency order.
3. The deployment waits, without a timeout of its own, until every component it names is
   RUNNING or FINISHED, and fails as soon as one of them is BROKEN (waitForServicesToStart). A
   component that never becomes ready therefore fails it through its Startup Timeout: ERRORED,
   restarted, BROKEN on the third error.
4. On failure with ROLLBACK, the versions, configuration and artifacts held before are applied the
   same way and waited for, except components that were BROKEN before the deployment.
Statuses (model/DeploymentResult.java, DeploymentService.java): `status` IN_PROGRESS, then
SUCCEEDED, FAILED or REJECTED; `detailedStatus` SUCCESSFUL, FAILED_NO_STATE_CHANGE,
FAILED_ROLLBACK_NOT_REQUESTED, FAILED_ROLLBACK_COMPLETE, FAILED_UNABLE_TO_ROLLBACK or REJECTED.
Records are kept in ROOT/deployments/<id>.json; ROOT/deployments/queue/ takes documents from
`python -m localgg deploy` while `python -m localgg run` goes.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localgg.authz import Authorizer, PolicyError
from localgg.builtins import BUILTIN_DEFAULTS, NUCLEUS, truthy
from localgg.deploy import DeployError, component_paths, deploy_component
from localgg.interpolate import ComponentPaths, interpolate_tree
from localgg.recipes import ComponentRecipe, RecipeError, discover, start_order
from localgg.runtime import build_spec
from localgg.supervisor import READY_STATES, State, utc_stamp

if TYPE_CHECKING:
    from localgg.runtime import LocalRuntime

FAILURE_POLICIES = ("ROLLBACK", "DO_NOTHING")
DOCUMENT_KEYS = frozenset({"targetArn", "deploymentName", "components", "deploymentPolicies",
                           "iotJobConfiguration", "parentTargetArn", "tags"})
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "REJECTED"})
QUEUE = Path("deployments") / "queue"


class Rejected(ValueError):
    """The document cannot be a deployment (REJECTED): nothing changed."""


class NoStateChange(RuntimeError):
    """The deployment failed before anything changed (FAILED_NO_STATE_CHANGE)."""


@dataclass
class Plan:
    """What the device holds after a deployment: recipes in start order, every component's
    configuration (the runtime's own included) and artifact folders."""

    recipes: list[ComponentRecipe]
    configurations: dict[str, dict[str, Any]]
    paths: dict[str, ComponentPaths]


# ----- the document -------------------------------------------------------------------------
def parse_document(document: Any) -> tuple[dict[str, tuple[str, Any]], str]:
    """{name: (version, configurationUpdate)} and the failure handling policy; Rejected."""
    from localgg.runtime import OverrideError, parse_configuration_update

    if not isinstance(document, dict):
        raise Rejected("a deployment document must be a JSON object")
    unknown = sorted(set(document) - DOCUMENT_KEYS)
    if unknown:
        raise Rejected(f"unknown deployment keys {unknown}; known: {sorted(DOCUMENT_KEYS)}")
    components = document.get("components")
    if not isinstance(components, dict) or not components:
        raise Rejected("'components' must name at least one component")
    parsed: dict[str, tuple[str, Any]] = {}
    for name, entry in components.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("componentVersion"), str):
            raise Rejected(f"components.{name} needs a componentVersion string")
        extra = sorted(set(entry) - {"componentVersion", "configurationUpdate", "runWith"})
        if extra:
            raise Rejected(f"components.{name}: unknown keys {extra}")
        if "runWith" in entry:
            raise Rejected(f"components.{name}: runWith is not emulated by the local runtime")
        update = entry.get("configurationUpdate")
        try:
            parse_configuration_update(update)
        except OverrideError as exc:
            raise Rejected(f"components.{name}.configurationUpdate: {exc}") from None
        parsed[name] = (entry["componentVersion"], update)
    policies = document.get("deploymentPolicies") or {}
    if not isinstance(policies, dict):
        raise Rejected("deploymentPolicies must be an object")
    policy = policies.get("failureHandlingPolicy", "ROLLBACK")
    if policy not in FAILURE_POLICIES:
        raise Rejected(f"deploymentPolicies.failureHandlingPolicy must be one of "
                       f"{list(FAILURE_POLICIES)}, got {policy!r}")
    return parsed, policy


def plan_deployment(runtime: LocalRuntime, document: Any,
                    components_dir: Path | None) -> tuple[Plan, str]:
    """Resolve versions, configuration and artifacts; Rejected or NoStateChange if it cannot."""
    from localgg.runtime import resolve_configuration

    wanted, policy = parse_document(document)
    running = {r.name: r for r in runtime.recipes}
    ours = {n: v for n, v in wanted.items() if n not in BUILTIN_DEFAULTS}
    added = sorted(set(ours) - set(running))
    if added:
        raise Rejected(f"{added} are not running here: adding components to a running local "
                       "runtime is not emulated (restart it with them built)")
    removed = sorted(set(running) - set(ours))
    if removed:
        raise Rejected(f"{removed} are running but not in the deployment, which would remove "
                       "them: removal is not emulated; name every running component")
    built: dict[str, ComponentRecipe] = {}
    if components_dir is not None:
        try:
            built = {r.name: r for r in discover(components_dir)}
        except RecipeError as exc:
            raise NoStateChange(str(exc)) from None
    recipes = []
    for name, (version, _update) in sorted(ours.items()):
        if version == running[name].version:
            recipes.append(running[name])
        elif (name, version) in runtime.store:  # deployed before: its artifacts are kept
            recipes.append(runtime.store[(name, version)])
        elif name in built and built[name].version == version:
            recipes.append(built[name])
        else:
            where = f"built in {components_dir}" if components_dir else "given a components folder"
            raise NoStateChange(f"{name} {version}: not the running version "
                                f"({running[name].version}), not deployed here before and not "
                                f"{where}")
    try:
        recipes = start_order(recipes)
    except RecipeError as exc:
        raise NoStateChange(str(exc)) from None
    held = {name: runtime.ipc.get_configuration(name) for name in running}
    configurations = copy.deepcopy(runtime.configurations())
    for recipe in recipes:
        configurations[recipe.name] = resolve_configuration(
            held[recipe.name], recipe.default_configuration, ours[recipe.name][1])
    for name, defaults in BUILTIN_DEFAULTS.items():
        if name in wanted:
            new = resolve_configuration(configurations[name], defaults, wanted[name][1])
            if new != configurations[name]:
                raise Rejected(f"{name}: changing the runtime's own configuration in a running "
                               "local runtime is not emulated; stop it and start it with "
                               "--config-overrides")
    paths = dict(runtime.paths)
    for recipe in recipes:
        if (recipe.name, recipe.version) in runtime.store:
            paths[recipe.name] = component_paths(runtime.root, recipe.name, recipe.version)
        else:
            try:
                paths[recipe.name] = deploy_component(runtime.root, recipe, runtime.run_as)
            except (DeployError, OSError) as exc:
                raise NoStateChange(f"{recipe.name} {recipe.version}: {exc}") from None
            runtime.store[(recipe.name, recipe.version)] = recipe
    if truthy(configurations[NUCLEUS].get("interpolateComponentConfiguration")):
        for recipe in recipes:
            ctx = runtime._context(recipe, paths, configurations, system_only=True)
            configurations[recipe.name] = interpolate_tree(configurations[recipe.name], ctx)
    for recipe in recipes:  # what the nucleus would refuse, refused before anything changes
        try:
            Authorizer(configurations[recipe.name].get("accessControl"))
            build_spec(recipe, runtime._context(recipe, paths, configurations), paths[recipe.name],
                       {})
        except (PolicyError, RecipeError, ValueError, TypeError) as exc:
            raise NoStateChange(f"{recipe.name} {recipe.version}: {exc}") from None
    return Plan(recipes, configurations, paths), policy


def current_plan(runtime: LocalRuntime) -> Plan:
    """What the device holds now: the rollback target."""
    return Plan(list(runtime.recipes), copy.deepcopy(runtime.configurations()),
                dict(runtime.paths))


# ----- applying -----------------------------------------------------------------------------
def apply_plan(runtime: LocalRuntime, plan: Plan) -> list[str]:
    """Merge the configuration, then reinstall or restart what changed; returns their names."""
    supervisor = runtime.supervisor
    assert supervisor is not None and runtime.ipc is not None
    states = supervisor.snapshot()
    before = {r.name: r for r in runtime.recipes}
    for recipe in plan.recipes:
        config = plan.configurations[recipe.name]
        runtime.ipc.set_component(recipe.name, config, config.get("accessControl"))
    changes = []
    for recipe in plan.recipes:
        spec = runtime._spec(recipe, plan.paths, plan.configurations)
        old = runtime.specs[recipe.name]
        reinstall = (before[recipe.name].version != recipe.version or spec.install != old.install
                     or states[recipe.name].state == State.BROKEN)
        if reinstall or spec != old:
            changes.append((spec, reinstall))
        runtime.specs[recipe.name] = spec
    # A HARD dependent left INSTALLED behind a BROKEN dependency starts again with it.
    replaced = {spec.name for spec, _ in changes}
    for recipe in plan.recipes:
        deps = {d.name for d in recipe.dependencies if d.dependency_type == "HARD"}
        if recipe.name in supervisor.blocked() and recipe.name not in replaced and deps & replaced:
            changes.append((runtime.specs[recipe.name], False))
    runtime.recipes = list(plan.recipes)
    runtime.paths = dict(plan.paths)
    runtime.set_configurations(plan.configurations)
    for spec, reinstall in changes:
        runtime.log_event(f"deployment: {'reinstalling' if reinstall else 'restarting'} "
                          f"{spec.name} {spec.env.get('GREENGRASS_COMPONENT_VERSION', '')}")
        supervisor.replace(spec, reinstall)
    return [spec.name for spec, _ in changes]


def wait_for_services(runtime: LocalRuntime, tracked: set[str]) -> str | None:
    """None once every tracked component is RUNNING or FINISHED; the failure cause as soon as
    one is BROKEN (or the runtime stops)."""
    supervisor = runtime.supervisor
    assert supervisor is not None

    def decided(snapshot: dict[str, Any]) -> bool:
        states = [snapshot[n].state for n in tracked]
        return (State.BROKEN in states or bool(tracked & supervisor.blocked())
                or all(s in READY_STATES for s in states))

    while not supervisor.wait_until(decided, 1.0):
        if runtime.stopping:
            return "the runtime stopped during the deployment"
    snapshot = supervisor.snapshot()
    for name in sorted(tracked):
        if snapshot[name].state == State.BROKEN:
            return f"Service {name} in broken state after deployment: {snapshot[name].message}"
    for name in sorted(tracked & supervisor.blocked()):
        return f"Service {name} cannot start: {snapshot[name].message}"
    return None


# ----- one deployment, start to end ---------------------------------------------------------
class Record:
    """ROOT/deployments/<id>.json, rewritten at every step."""

    def __init__(self, root: Path, deployment_id: str, document: Any) -> None:
        self.path = root / "deployments" / f"{deployment_id}.json"
        self.body: dict[str, Any] = {
            "deploymentId": deployment_id,
            "deploymentName": document.get("deploymentName", "") if isinstance(document, dict)
            else "",
            "createdAt": utc_stamp(),
            "status": "IN_PROGRESS",
            "detailedStatus": None,
            "failureCause": None,
            "components": {},
            "history": [],
        }

    def step(self, status: str, message: str, detailed: str | None = None) -> None:
        self.body["status"] = status
        if detailed is not None:
            self.body["detailedStatus"] = detailed
        self.body["history"].append({"time": utc_stamp(), "status": detailed or status,
                                     "message": message})
        write_json(self.path, self.body)


def write_json(path: Path, body: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def run_deployment(runtime: LocalRuntime, document: Any, components_dir: Path | None,
                   deployment_id: str | None = None) -> dict[str, Any]:
    deployment_id = deployment_id or uuid.uuid4().hex
    record = Record(runtime.root, deployment_id, document)

    def event(status: str, message: str, detailed: str | None = None) -> None:
        runtime.log_event(f"deployment {deployment_id}: {detailed or status}: {message}")
        record.step(status, message, detailed)

    if runtime.supervisor is None:
        event("REJECTED", "nucleus mode runs no components to deploy to", "REJECTED")
        return record.body
    with runtime.deploy_lock:
        event("IN_PROGRESS", "received")
        try:
            plan, policy = plan_deployment(runtime, document, components_dir)
        except Rejected as exc:
            record.body["failureCause"] = str(exc)
            event("REJECTED", str(exc), "REJECTED")
            return record.body
        except NoStateChange as exc:
            record.body["failureCause"] = str(exc)
            event("FAILED", str(exc), "FAILED_NO_STATE_CHANGE")
            return record.body
        record.body["components"] = {r.name: r.version for r in plan.recipes}
        record.body["failureHandlingPolicy"] = policy
        previous = current_plan(runtime)
        broken_before = {n for n, s in runtime.supervisor.snapshot().items()
                         if s.state == State.BROKEN}
        try:
            changed = apply_plan(runtime, plan)
            event("IN_PROGRESS", f"applied; changed {changed or 'nothing'}; waiting for "
                                 f"{sorted(r.name for r in plan.recipes)}")
            failure = wait_for_services(runtime, {r.name for r in plan.recipes})
        except Exception as exc:  # a runtime bug must still end in a state and a rollback
            failure = f"applying the deployment failed: {exc!r}"
        if failure is None:
            event("SUCCEEDED", "all components RUNNING or FINISHED", "SUCCESSFUL")
            return record.body
        record.body["failureCause"] = failure
        if policy != "ROLLBACK" or runtime.stopping:
            event("FAILED", f"{failure}; not rolled back (failureHandlingPolicy {policy})",
                  "FAILED_ROLLBACK_NOT_REQUESTED")
            return record.body
        event("IN_PROGRESS", f"{failure}; rolling back to "
                             f"{ {r.name: r.version for r in previous.recipes} }")
        try:
            apply_plan(runtime, previous)
            tracked = {r.name for r in previous.recipes} - broken_before
            rollback_failure = wait_for_services(runtime, tracked)
        except Exception as exc:
            rollback_failure = f"applying the rollback failed: {exc!r}"
        if rollback_failure is None:
            event("FAILED", f"{failure}; rolled back", "FAILED_ROLLBACK_COMPLETE")
        else:
            event("FAILED", f"{failure}; rollback failed too: {rollback_failure}",
                  "FAILED_UNABLE_TO_ROLLBACK")
        return record.body


# ----- the queue: `python -m localgg deploy` -> a running `python -m localgg run` ------------
def submit(root: Path, document: Any, components_dir: Path | None) -> str:
    """Queue a deployment for the runtime using `root`; returns its id."""
    deployment_id = uuid.uuid4().hex
    body = {"document": document,
            "componentsDir": str(components_dir.absolute()) if components_dir else None}
    write_json(root / QUEUE / f"{deployment_id}.json", body)
    return deployment_id


class QueueWatcher:
    """Takes queued documents one at a time on a thread of its own (DeploymentService)."""

    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self.folder = runtime.root / QUEUE
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder.parent, 0o700)
        self._thread: threading.Thread | None = None

    def poll(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        queued = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
        if not queued:
            return
        path = queued[0]
        deployment_id = path.stem
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            document = body["document"]
            folder = Path(body["componentsDir"]) if body.get("componentsDir") else None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            document, folder = {"unreadable": str(exc)}, None
        path.unlink()
        self._thread = threading.Thread(
            target=run_deployment, args=(self.runtime, document, folder, deployment_id),
            name="lgg-deployment", daemon=True)
        self._thread.start()


def wait_for_record(root: Path, deployment_id: str, timeout: float,
                    echo: Any = None) -> dict[str, Any] | None:
    """Follow ROOT/deployments/<id>.json until it is final; None after `timeout`."""
    path = root / "deployments" / f"{deployment_id}.json"
    shown = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            body = None
        if body is not None:
            for entry in body["history"][shown:]:
                if echo is not None:
                    echo(f"{entry['time']} {entry['status']}: {entry['message']}")
            shown = len(body["history"])
            if body["status"] in TERMINAL:
                return body
        time.sleep(0.2)
    return None
