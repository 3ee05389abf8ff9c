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
import shlex
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localgg.deploy import deploy_component
from localgg.interpolate import ComponentPaths, InterpolationContext, interpolate, interpolate_tree
from localgg.recipes import ComponentRecipe, RecipeError, discover, start_order
from localgg.supervisor import (
    ComponentSpec,
    ComponentStatus,
    RestartPolicy,
    Step,
    Supervisor,
    kill_marked,
    utc_stamp,
)

DEFAULT_VENV_CACHE = Path("~/.cache/vqi/venvs")
# Set in every component process (not in env files): finds processes left by a runtime that died.
ROOT_MARKER = "LOCALGG_ROOT"
_MAX_SOCKET_PATH = 100


class RootBusyError(RuntimeError):
    """Another localgg runtime holds this root folder."""


class OverrideError(ValueError):
    """The configuration overrides file is not shaped like a deployment's configurationUpdate."""


@dataclass
class RuntimeOptions:
    root: Path
    components_dir: Path = Path("components")
    thing_name: str = "local-thing"
    region: str = "us-east-1"
    overrides: dict[str, Any] = field(default_factory=dict)
    only: list[str] | None = None
    venv_cache: Path | None = None
    stream_manager_port: int = 0
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


def _pointer_tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise OverrideError(f"reset path {pointer!r} must be a JSON pointer starting with /")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _reset(config: dict[str, Any], defaults: dict[str, Any], pointer: str) -> dict[str, Any]:
    """Set the value at `pointer` back to its default (removing it when it has none)."""
    tokens = _pointer_tokens(pointer)
    if not tokens:
        return copy.deepcopy(defaults)
    result = copy.deepcopy(config)
    node, default = result, defaults
    for token in tokens[:-1]:
        if not isinstance(node.get(token), dict):
            return result
        node = node[token]
        default = default.get(token) if isinstance(default, dict) else None
    last = tokens[-1]
    if isinstance(default, dict) and last in default:
        node[last] = copy.deepcopy(default[last])
    else:
        node.pop(last, None)
    return result


def apply_configuration_update(defaults: dict[str, Any], update: Any) -> dict[str, Any]:
    """`{"reset": [...], "merge": {...} | "<json>"}` applied as a deployment would: reset, merge."""
    if update is None:
        return copy.deepcopy(defaults)
    if not isinstance(update, dict) or set(update) - {"merge", "reset"}:
        raise OverrideError(f"expected {{'merge': ..., 'reset': [...]}}, got {update!r}")
    config = copy.deepcopy(defaults)
    resets = update.get("reset") or []
    if not isinstance(resets, list) or not all(isinstance(r, str) for r in resets):
        raise OverrideError(f"'reset' must be a list of JSON pointers, got {resets!r}")
    for pointer in resets:
        config = _reset(config, defaults, pointer)
    merge = update.get("merge") or {}
    if isinstance(merge, str):
        try:
            merge = json.loads(merge)
        except ValueError as exc:
            raise OverrideError(f"'merge' string is not JSON: {exc}") from exc
    if not isinstance(merge, dict):
        raise OverrideError(f"'merge' must be an object, got {merge!r}")
    return deep_merge(config, merge)


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
    return Path(tempfile.mkdtemp(prefix="lgg-")) / "ipc.sock"


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

    # -- setup --
    def _load(self) -> list[ComponentRecipe]:
        recipes = start_order(discover(self.options.components_dir), self.options.only)
        unknown = sorted(set(self.options.overrides) - {r.name for r in recipes})
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

    def start(self, run_components: bool = True) -> None:
        """Deploy the built components, start the servers and (in run mode) the lifecycles."""
        from localgg.ipc_server import IpcServer
        from localgg.stream_manager.server import StreamManagerServer

        self.mode = "run" if run_components else "nucleus"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_root()
        for sub in ("logs", "env", "cloud", "work", "packages"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._event_log = (self.root / "logs" / "greengrass.log").open(
            "a", encoding="utf-8", buffering=1)
        leftovers = kill_marked(ROOT_MARKER, str(self.root))
        if leftovers:
            self.log_event(f"killed {len(leftovers)} process(es) left by an earlier runtime: "
                           f"{leftovers}")
        self.recipes = self._load()
        configurations = {
            r.name: apply_configuration_update(r.default_configuration,
                                               self.options.overrides.get(r.name))
            for r in self.recipes
        }
        paths = {r.name: deploy_component(self.root, r) for r in self.recipes}
        socket_path = _socket_path(self.root)
        (self.root / "ipc-socket-path").write_text(f"{socket_path}\n", encoding="utf-8")
        self.ipc = IpcServer(socket_path, self.root / "cloud" / "iotcore.jsonl",
                             thing_name=self.options.thing_name)
        self.stream_manager = StreamManagerServer(
            self.root / "stream-manager",
            port=self.options.stream_manager_port,
            bucket_root=self.root / "cloud" / "s3",
            kinesis_log=self.root / "cloud" / "kinesis.jsonl",
        )
        self.ipc.start()
        try:
            self.stream_manager.start()
        except BaseException:
            self.ipc.stop()
            raise
        venv_cache = self.options.venv_cache or Path(
            os.environ.get("VQI_VENV_CACHE") or DEFAULT_VENV_CACHE)
        specs = []
        for recipe in self.recipes:
            ctx = InterpolationContext(
                component=recipe.name,
                thing_name=self.options.thing_name,
                root=self.root,
                paths=paths,
                configurations=configurations,
                dependencies={d.name for d in recipe.dependencies},
            )
            config = configurations[recipe.name]
            access = interpolate_tree(config.get("accessControl"), ctx)
            self.ipc.add_component(recipe.name, config, access)
            runtime_env = {
                **self.ipc.ipc_env(recipe.name),
                "AWS_IOT_THING_NAME": self.options.thing_name,
                "AWS_REGION": self.options.region,
                "AWS_DEFAULT_REGION": self.options.region,
                "GG_ROOT_CA_PATH": str(self.root / "rootCA.pem"),
                **self.stream_manager.env(),
                "VQI_VENV_CACHE": str(venv_cache.expanduser()),
            }
            spec, env = build_spec(recipe, ctx, paths[recipe.name], runtime_env)
            self.component_env[recipe.name] = env
            write_env_file(self.root / "env" / f"{recipe.name}.env", env)
            spec.env[ROOT_MARKER] = str(self.root)
            specs.append(spec)
        names = [r.name for r in self.recipes]
        self.log_event(f"started in {self.mode} mode: ipc {socket_path}, stream manager "
                       f"port {self.stream_manager.port}, components {names}")
        if run_components:
            self.supervisor = Supervisor(specs, self.root / "logs", self.options.policy,
                                         on_change=self._on_change)
            self.write_status()
            self.supervisor.start()
        else:
            self.write_status()

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
