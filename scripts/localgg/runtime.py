"""Compose the local Greengrass runtime: IPC server, Stream Manager, deployed components, lifecycle.

ROOT layout (mirrors /greengrass/v2 where Greengrass has an equivalent):
    packages/artifacts/<name>/<version>/            copied artifacts
    packages/artifacts-unarchived/<name>/<version>/ unpacked ZIP artifacts
    work/<name>/                                    {work:path}, kept across runs
    logs/<name>.log, logs/greengrass.log            component output, runtime events
    env/<name>.env                                  shell-sourceable identity of each component
    cloud/iotcore.jsonl, cloud/kinesis.jsonl, cloud/s3/   what "the cloud" received
    stream-manager/                                 Stream Manager's persisted streams
    ipc.socket (or a short temp path, recorded in ipc-socket-path)
    status.json                                     component states, rewritten on every change
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import pwd
import re
import shlex
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localgg.builtins import BUILTIN_DEFAULTS, NUCLEUS, STREAM_MANAGER, parse_port, truthy
from localgg.deploy import deploy_component
from localgg.interpolate import ComponentPaths, InterpolationContext, interpolate, interpolate_tree
from localgg.recipes import ComponentRecipe, RecipeError, discover, start_order
from localgg.supervisor import (
    ComponentSpec,
    ComponentStatus,
    RestartPolicy,
    RunAs,
    Step,
    Supervisor,
    kill_marked,
    utc_stamp,
)
from localgg.users import check_reachable, ensure_run_as, is_root

SVCUID_ENV = "SVCUID"

# Set in every component process (not in env files): finds processes left by a runtime that died.
ROOT_MARKER = "LOCALGG_ROOT"
# What the runtime itself sets in every component's environment: extra_env may not replace it.
RUNTIME_VARIABLES = frozenset({
    SVCUID_ENV, "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH",
    "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", "AWS_IOT_THING_NAME",
    "GREENGRASS_COMPONENT_VERSION", "AWS_REGION", "AWS_DEFAULT_REGION", "GG_ROOT_CA_PATH",
    ROOT_MARKER,
})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_SOCKET_PATH = 100


class RootBusyError(RuntimeError):
    """Another localgg runtime holds this root folder."""


class OverrideError(ValueError):
    """The configuration overrides file is not shaped like a deployment's configurationUpdate."""


class ExtraEnvError(ValueError):
    """An extra environment variable has a bad name or would replace one the runtime sets."""


def check_extra_env(extra_env: dict[str, str]) -> None:
    for name, value in extra_env.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ExtraEnvError(f"extra environment variable name {name!r} is not a valid name")
        if name in RUNTIME_VARIABLES:
            raise ExtraEnvError(f"{name} is set by the runtime itself, not as extra environment"
                                " (--thing-name and --region choose the thing name and region)")
        if not isinstance(value, str):
            raise ExtraEnvError(f"extra environment variable {name} must be a string, "
                                f"got {value!r}")


def parse_env_assignment(text: str) -> tuple[str, str]:
    """`NAME=VALUE` (the value may be empty or hold `=`), as `--env` takes it."""
    name, sep, value = text.partition("=")
    if not sep or not _ENV_NAME.fullmatch(name):
        raise ExtraEnvError(f"expected NAME=VALUE, got {text!r}")
    return name, value


@dataclass
class RuntimeOptions:
    root: Path
    components_dir: Path = Path("components")
    thing_name: str = "local-thing"
    region: str = "us-east-1"
    overrides: dict[str, Any] = field(default_factory=dict)
    only: list[str] | None = None
    # Added to every component's environment (the recipe's setEnv wins): a local convenience;
    # on a device a recipe's setEnv is the way (see README, "Environment of a component").
    extra_env: dict[str, str] = field(default_factory=dict)
    stream_manager_port: int | None = None  # set Stream Manager's port (0: a free one)
    policy: RestartPolicy = field(default_factory=RestartPolicy)


# ----- configuration -----------------------------------------------------------------------
def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Greengrass merge: maps merge key by key, anything else (lists too) replaces."""
    result = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def fill_defaults(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Recipe defaults under what the device holds: the nucleus merges them with timestamp 1,
    so they only fill keys that are absent (KernelConfigResolver.resolveConfigurationToApply)."""
    result = copy.deepcopy(config)
    for key, value in defaults.items():
        if key not in result:
            result[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(result[key], dict):
            result[key] = fill_defaults(result[key], value)
    return result


def _pointer_tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise OverrideError(f"reset path {pointer!r} must be a JSON pointer starting with /")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _remove(config: dict[str, Any], pointer: str) -> dict[str, Any]:
    """Remove the key at `pointer` ("" removes everything); the defaults then fill it again."""
    tokens = _pointer_tokens(pointer)
    if not tokens:
        return {}
    result = copy.deepcopy(config)
    node: Any = result
    for token in tokens[:-1]:
        node = node.get(token) if isinstance(node, dict) else None
    if isinstance(node, dict):  # an array element cannot be reset, as on the nucleus
        node.pop(tokens[-1], None)
    return result


def parse_configuration_update(update: Any) -> tuple[list[str], dict[str, Any]]:
    """`{"reset": [...], "merge": {...} | "<json>"}` -> (reset pointers, merge object)."""
    if update is None:
        return [], {}
    if not isinstance(update, dict) or set(update) - {"merge", "reset"}:
        raise OverrideError(f"expected {{'merge': ..., 'reset': [...]}}, got {update!r}")
    resets = update.get("reset") or []
    if not isinstance(resets, list) or not all(isinstance(r, str) for r in resets):
        raise OverrideError(f"'reset' must be a list of JSON pointers, got {resets!r}")
    for pointer in resets:
        _pointer_tokens(pointer)
    merge = update.get("merge") or {}
    if isinstance(merge, str):
        try:
            merge = json.loads(merge)
        except ValueError as exc:
            raise OverrideError(f"'merge' string is not JSON: {exc}") from exc
    if not isinstance(merge, dict):
        raise OverrideError(f"'merge' must be an object, got {merge!r}")
    return resets, merge


def resolve_configuration(current: dict[str, Any] | None, defaults: dict[str, Any],
                          update: Any) -> dict[str, Any]:
    """A deployment's configuration for one component, as the nucleus computes it: what the
    device holds, minus `reset` paths, defaults filling what is absent, then `merge`."""
    resets, merge = parse_configuration_update(update)
    config = copy.deepcopy(current or {})
    for pointer in resets:
        config = _remove(config, pointer)
    return deep_merge(fill_defaults(config, defaults), merge)


def load_overrides(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OverrideError(f"{path}: cannot read configuration overrides: {exc}") from exc
    if not isinstance(data, dict):
        raise OverrideError(f"{path}: expected an object keyed by component name")
    return data


# ----- environment files -------------------------------------------------------------------
def write_env_file(path: Path, env: dict[str, str]) -> None:
    """KEY='value' lines that `source` (sh/bash) and read_env_file both understand."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}={shlex.quote(value)}" for key, value in sorted(env.items())]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a file written by write_env_file (for tests and tools that do not use a shell)."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        parts = shlex.split(value)
        env[key.strip()] = parts[0] if parts else ""
    return env


# ----- lifecycle ---------------------------------------------------------------------------
def _lower_keys(mapping: dict[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in mapping.items()}


def _env_map(raw: Any, ctx: InterpolationContext, where: str) -> dict[str, str]:
    if raw in (None, {}):
        return {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{ctx.component}: {where} setEnv must be a mapping")
    return {str(k): interpolate(str(v), ctx) for k, v in raw.items()}


def _step(raw: Any, ctx: InterpolationContext, name: str) -> Step | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return Step(script=interpolate(raw, ctx))
    if not isinstance(raw, dict):
        raise RecipeError(f"{ctx.component}: lifecycle step {name} must be a script or mapping")
    fields = _lower_keys(raw)
    script = fields.get("script")
    if not isinstance(script, str):
        raise RecipeError(f"{ctx.component}: lifecycle step {name} has no Script")
    timeout = fields.get("timeout")
    skip_if = fields.get("skipif")
    return Step(
        script=interpolate(script, ctx),
        timeout=float(timeout) if timeout is not None else None,
        env=_env_map(fields.get("setenv"), ctx, name),
        skip_if=interpolate(str(skip_if), ctx) if skip_if else None,
    )


def build_spec(recipe: ComponentRecipe, ctx: InterpolationContext, paths: ComponentPaths,
               runtime_env: dict[str, str]) -> tuple[ComponentSpec, dict[str, str]]:
    """The supervisor's spec and the environment a process of this component gets."""
    lifecycle = _lower_keys(recipe.lifecycle)
    notes = [f"lifecycle step {key} is not emulated locally; ignored"
             for key in lifecycle if key in ("bootstrap", "recover")]
    if any(isinstance(v, dict) and str(_lower_keys(v).get("requiresprivilege")).lower() == "true"
           for v in lifecycle.values()):
        notes.append("RequiresPrivilege is not emulated: every step runs as the current user")
    env = {**runtime_env, **_env_map(lifecycle.get("setenv"), ctx, "Lifecycle")}
    spec = ComponentSpec(
        name=recipe.name,
        work_dir=paths.work,
        env=env,
        install=_step(lifecycle.get("install"), ctx, "Install"),
        startup=_step(lifecycle.get("startup"), ctx, "Startup"),
        run=_step(lifecycle.get("run"), ctx, "Run"),
        shutdown=_step(lifecycle.get("shutdown"), ctx, "Shutdown"),
        dependencies={d.name: d.dependency_type for d in recipe.dependencies},
        notes=notes,
    )
    return spec, env


def _socket_path(root: Path) -> Path:
    candidate = root.absolute() / "ipc.socket"
    if len(os.fsencode(str(candidate))) <= _MAX_SOCKET_PATH:
        return candidate
    folder = Path(tempfile.mkdtemp(prefix="lgg-"))
    os.chmod(folder, 0o755)  # component users must reach the socket
    return folder / "ipc.sock"


class LocalRuntime:
    """The whole local Greengrass: `start(run_components)` then `stop()`."""

    def __init__(self, options: RuntimeOptions, echo: bool = False) -> None:
        self.options = options
        self.echo = echo
        self.root = options.root.absolute()
        self.recipes: list[ComponentRecipe] = []
        self.component_env: dict[str, dict[str, str]] = {}
        self.ipc: Any = None
        self.stream_manager: Any = None
        self.supervisor: Supervisor | None = None
        self.mode = "run"
        self._status_lock = threading.Lock()
        self._last_status = ""
        self._event_log: Any = None
        self._stopped = False
        self._lock_file: Any = None
        self.run_as: RunAs | None = None  # the components' user, once started
        self._held: dict[str, Any] = {}  # configuration of components not deployed this time
        self._configurations: dict[str, dict[str, Any]] = {}
        self.paths: dict[str, ComponentPaths] = {}
        self.specs: dict[str, ComponentSpec] = {}
        # Every (name, version) deployed since start, artifacts under packages/ (the component
        # store): a rollback or a later deployment returns to one without its build folder.
        self.store: dict[tuple[str, str], ComponentRecipe] = {}
        self.deploy_lock = threading.Lock()  # one deployment at a time, as DeploymentService
        self._save_lock = threading.Lock()

    # -- setup --
    def _load(self) -> list[ComponentRecipe]:
        recipes = start_order(discover(self.options.components_dir), self.options.only)
        unknown = sorted(set(self.options.overrides) - {r.name for r in recipes}
                         - set(BUILTIN_DEFAULTS))
        if unknown:
            self.log_event(f"configuration overrides for components not running ignored: {unknown}")
        return recipes

    def log_event(self, message: str) -> None:
        """Runtime events go to logs/greengrass.log (and stderr when echoing)."""
        line = f"{utc_stamp()} [INFO] (localgg) {message}"
        if self._event_log is not None:
            self._event_log.write(line + "\n")
        if self.echo:
            print(line, file=sys.stderr, flush=True)

    def start(self, run_components: bool = True,
              prepare: Callable[[RunAs | None], None] | None = None) -> None:
        """Deploy the built components, start the servers and (in run mode) the lifecycles.

        `prepare(run_as)` runs after the deployment and before any component starts: what an
        operator does on a device beforehand, e.g. create a camera inbox the component user owns.
        """
        from localgg.ipc_server import IpcServer
        from localgg.stream_manager.server import StreamManagerServer

        check_extra_env(self.options.extra_env)
        self.mode = "run" if run_components else "nucleus"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_root()
        for sub in ("logs", "env", "cloud", "work", "packages", "config"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "config", 0o700)
        self._event_log = (self.root / "logs" / "greengrass.log").open(
            "a", encoding="utf-8", buffering=1)
        leftovers = kill_marked(ROOT_MARKER, str(self.root))
        if leftovers:
            self.log_event(f"killed {len(leftovers)} process(es) left by an earlier runtime: "
                           f"{leftovers}")
        self.recipes = self._load()
        configurations = self._deploy_configuration()
        nucleus = configurations[NUCLEUS]
        run_as = self.run_as = self._run_as(nucleus)
        if run_as is not None:
            check_reachable(self.root, run_as)
        paths = {r.name: deploy_component(self.root, r, run_as) for r in self.recipes}
        if truthy(nucleus.get("interpolateComponentConfiguration")):
            # KernelConfigResolver: system parameters only, never {configuration:...}.
            for recipe in self.recipes:
                ctx = self._context(recipe, paths, configurations, system_only=True)
                configurations[recipe.name] = interpolate_tree(configurations[recipe.name], ctx)
        socket_path = _socket_path(self.root)
        (self.root / "ipc-socket-path").write_text(f"{socket_path}\n", encoding="utf-8")
        self.ipc = IpcServer(socket_path, self.root / "cloud" / "iotcore.jsonl",
                             thing_name=self.options.thing_name)
        sm_config = configurations[STREAM_MANAGER]
        self.stream_manager = StreamManagerServer(
            self.root / "stream-manager",
            port=parse_port(sm_config.get("STREAM_MANAGER_SERVER_PORT")),
            bucket_root=self.root / "cloud" / "s3",
            kinesis_log=self.root / "cloud" / "kinesis.jsonl",
            accepts_token=(self.ipc.is_component_token
                           if truthy(sm_config.get("STREAM_MANAGER_AUTHENTICATE_CLIENT", True))
                           else lambda _token: True),
        )
        self.ipc.start()
        try:
            self.stream_manager.start()
        except BaseException:
            self.ipc.stop()
            raise
        # A port chosen by the runtime (0) is Stream Manager's configuration from now on.
        sm_config["STREAM_MANAGER_SERVER_PORT"] = str(self.stream_manager.port)
        self._save_configuration(configurations)
        specs = []
        for recipe in self.recipes:
            config = configurations[recipe.name]
            self.ipc.add_component(recipe.name, config, config.get("accessControl"))
            specs.append(self._spec(recipe, paths, configurations))
        self.paths = paths
        self.specs = {spec.name: spec for spec in specs}
        self.store = {(r.name, r.version): r for r in self.recipes}
        names = [r.name for r in self.recipes]
        self.log_event(f"started in {self.mode} mode: ipc {socket_path}, stream manager "
                       f"port {self.stream_manager.port}, components {names}, running as "
                       f"{run_as.user + ':' + run_as.group if run_as else 'the current user'}")
        if prepare is not None:
            prepare(run_as)
        if run_components:
            self.supervisor = Supervisor(specs, self.root / "logs", self.options.policy,
                                         on_change=self._on_change)
            self.ipc.on_update_state = self.supervisor.report_state
            self.write_status()
            self.supervisor.start()
        else:
            self.write_status()

    def _spec(self, recipe: ComponentRecipe, paths: dict[str, ComponentPaths],
              configurations: dict[str, dict[str, Any]]) -> ComponentSpec:
        """The supervisor's spec for a registered component; writes its env file."""
        ctx = self._context(recipe, paths, configurations)
        ipc_env = self.ipc.ipc_env(recipe.name)
        runtime_env = {
            **self.options.extra_env,  # under the runtime's own variables and the recipe's
            **ipc_env,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": ipc_env[SVCUID_ENV],  # ShellRunner TES header
            "AWS_IOT_THING_NAME": self.options.thing_name,
            "GREENGRASS_COMPONENT_VERSION": recipe.version,
            "AWS_REGION": self.options.region,
            "AWS_DEFAULT_REGION": self.options.region,
            "GG_ROOT_CA_PATH": str(self.root / "rootCA.pem"),
        }
        spec, env = build_spec(recipe, ctx, paths[recipe.name], runtime_env)
        spec.run_as = self.run_as
        if self.run_as is not None:
            env = {**env, **self.run_as.env()}
        self.component_env[recipe.name] = env
        write_env_file(self.root / "env" / f"{recipe.name}.env", env)
        spec.env[ROOT_MARKER] = str(self.root)
        return spec

    # -- deployments into a running runtime (deployments.py) --
    def deploy(self, document: dict[str, Any], components_dir: Path | None = None,
               deployment_id: str | None = None) -> dict[str, Any]:
        """Apply a deployment document to the running components; returns its final record
        (also kept in ROOT/deployments/<id>.json). See localgg.deployments."""
        from localgg.deployments import run_deployment

        return run_deployment(self, document, components_dir, deployment_id)

    # -- deployment --
    def _config_file(self) -> Path:
        return self.root / "config" / "config.json"

    def _deploy_configuration(self) -> dict[str, dict[str, Any]]:
        """This start is a deployment: each component's configuration is what the device holds
        (ROOT/config/config.json), patched by the overrides' reset and merge."""
        try:
            held = json.loads(self._config_file().read_text(encoding="utf-8"))
        except FileNotFoundError:
            held = {}
        except (OSError, ValueError) as exc:
            raise OverrideError(f"{self._config_file()}: unreadable deployed configuration: "
                                f"{exc}") from exc
        defaults = {**BUILTIN_DEFAULTS, **{r.name: r.default_configuration for r in self.recipes}}
        configurations = {
            name: resolve_configuration(held.get(name), default, self.options.overrides.get(name))
            for name, default in defaults.items()
        }
        if self.options.stream_manager_port is not None:
            configurations[STREAM_MANAGER]["STREAM_MANAGER_SERVER_PORT"] = str(
                self.options.stream_manager_port)
        self._held = {k: v for k, v in held.items() if k not in configurations}
        return configurations

    def _save_configuration(self, configurations: dict[str, dict[str, Any]]) -> None:
        with self._save_lock:  # the main loop and a deployment's thread both save
            self._configurations = copy.deepcopy(configurations)
            body = {**self._held, **configurations}
            tmp = self._config_file().with_suffix(".tmp")
            tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.chmod(tmp, 0o600)
            tmp.replace(self._config_file())

    def configurations(self) -> dict[str, dict[str, Any]]:
        """Every component's configuration as last deployed or saved (builtins included)."""
        return self._configurations

    def set_configurations(self, configurations: dict[str, dict[str, Any]]) -> None:
        """A deployment's configuration is what the device holds from now on."""
        self._save_configuration(configurations)

    @property
    def stopping(self) -> bool:
        return self._stopped

    def save_configuration(self) -> None:
        """Persist what components changed over IPC (the nucleus keeps config.tlog); a
        deployment in progress saves its own."""
        if self.ipc is None or self.deploy_lock.locked():
            return
        current = copy.deepcopy(self._configurations)
        for recipe in self.recipes:
            with contextlib.suppress(KeyError):  # not registered: the start failed before it
                current[recipe.name] = self.ipc.get_configuration(recipe.name)
        if self._configurations and current != self._configurations:
            self._configurations = current
            self._save_configuration(current)

    def _run_as(self, nucleus: dict[str, Any]) -> RunAs | None:
        posix_user = str((nucleus.get("runWithDefault") or {}).get("posixUser") or "")
        if not is_root():
            if posix_user and posix_user.split(":")[0] != pwd.getpwuid(os.geteuid()).pw_name:
                self.log_event(f"not root: cannot switch to {posix_user}; components run as the "
                               f"current user (the nucleus does the same when not root)")
                print(f"localgg: not running as root, so components run as the current user, "
                      f"not {posix_user}", file=sys.stderr, flush=True)
            return None
        return ensure_run_as(posix_user or "root")

    def _context(self, recipe: ComponentRecipe, paths: dict[str, ComponentPaths],
                 configurations: dict[str, dict[str, Any]],
                 system_only: bool = False) -> InterpolationContext:
        return InterpolationContext(
            component=recipe.name,
            thing_name=self.options.thing_name,
            root=self.root,
            paths=paths,
            configurations={} if system_only else configurations,
            dependencies={d.name for d in recipe.dependencies},
        )

    def wait_settled(self, timeout: float) -> dict[str, str]:
        """Wait until every component is RUNNING, FINISHED, BROKEN or blocked; returns states."""
        if self.supervisor is None:
            raise RuntimeError("no component processes in nucleus mode")
        self.supervisor.wait_until(self.supervisor.settled, timeout)
        return {n: s.state.value for n, s in self.supervisor.snapshot().items()}

    def __enter__(self) -> LocalRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- status --
    def _on_change(self, name: str, status: ComponentStatus) -> None:
        self.log_event(f"{name} {status.state.value}" + (f": {status.message}"
                                                          if status.message else ""))
        self.write_status()

    def status(self) -> dict[str, Any]:
        components: dict[str, Any] = {}
        snapshot = self.supervisor.snapshot() if self.supervisor else {}
        for recipe in self.recipes:
            if recipe.name in snapshot:
                entry = snapshot[recipe.name].as_dict()
            else:
                entry = {"state": "NEW", "message": "nucleus mode: start it yourself with "
                         f"env/{recipe.name}.env"}
            entry["version"] = recipe.version
            entry["reportedState"] = self.ipc.component_state(recipe.name) if self.ipc else None
            entry["log"] = str(self.root / "logs" / f"{recipe.name}.log")
            components[recipe.name] = entry
        return {
            "mode": self.mode,
            "root": str(self.root),
            "thingName": self.options.thing_name,
            "ipcSocket": str(self.ipc.socket_path) if self.ipc else None,
            "streamManagerPort": self.stream_manager.port if self.stream_manager else None,
            "components": components,
        }

    def write_status(self) -> None:
        """Rewrite ROOT/status.json atomically when anything in it changed."""
        outer = self.supervisor.lock if self.supervisor else contextlib.nullcontext()
        with outer, self._status_lock:
            body = self.status()
            text = json.dumps(body, indent=2, sort_keys=True)
            if text == self._last_status:
                return
            self._last_status = text
            body["updated"] = utc_stamp()
            tmp = self.root / "status.json.tmp"
            tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            tmp.replace(self.root / "status.json")

    # -- teardown --
    def stop(self) -> None:
        """Stop every component, then the servers; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if self.supervisor is not None:
            self.supervisor.stop()
            escaped = kill_marked(ROOT_MARKER, str(self.root))
            if escaped:
                self.log_event(f"killed {len(escaped)} process(es) that left their component's "
                               f"process group: {escaped}")
            self.write_status()
        if self.stream_manager is not None:
            self.stream_manager.stop()
        if self.ipc is not None:
            self.save_configuration()
            self.ipc.stop()
            socket_dir = Path(self.ipc.socket_path).parent
            if socket_dir.name.startswith("lgg-") and socket_dir != self.root:
                try:
                    socket_dir.rmdir()
                except OSError:
                    pass
        self.log_event("stopped")
        if self._event_log is not None:
            self._event_log.close()
            self._event_log = None
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None

    def _lock_root(self) -> None:
        """One runtime per root: a second would share sockets, logs and work folders."""
        handle = (self.root / "localgg.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise RootBusyError(f"another localgg runtime is using {self.root}") from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle
