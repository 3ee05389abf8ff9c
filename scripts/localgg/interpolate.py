"""Recipe variable interpolation, as the Greengrass nucleus does it for lifecycle scripts.

Supported: `{artifacts:path}`, `{artifacts:decompressedPath}`, `{work:path}`,
`{configuration:/json/pointer}`, `{iot:thingName}`, `{kernel:rootPath}`, and the same namespaces
prefixed with a declared dependency's name (`{<dep>:artifacts:path}`, ...). Anything else - an
unknown namespace or key, a component that is not a declared dependency, a configuration key that
does not exist - is left exactly as written, which is what the nucleus does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_VARIABLE = re.compile(
    r"\{(?:(?P<component>[A-Za-z0-9_.\-]+):)?(?P<namespace>artifacts|work|configuration|iot|kernel)"
    r":(?P<key>[^{}]+)\}"
)


@dataclass(frozen=True)
class ComponentPaths:
    """Where one component's files live under the runtime root."""

    artifacts: Path
    decompressed: Path
    work: Path


@dataclass
class InterpolationContext:
    """Everything one component's recipe variables may refer to."""

    component: str
    thing_name: str
    root: Path
    paths: dict[str, ComponentPaths]
    configurations: dict[str, dict[str, Any]]
    dependencies: set[str] = field(default_factory=set)


def json_pointer_get(document: Any, pointer: str) -> tuple[bool, Any]:
    """Resolve an RFC 6901 pointer; returns (found, value)."""
    if pointer in ("", "/"):
        return True, document
    if not pointer.startswith("/"):
        return False, None
    node = document
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False, None
    return True, node


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _resolve(match: re.Match[str], ctx: InterpolationContext) -> str:
    original = match.group(0)
    component = match.group("component")
    namespace = match.group("namespace")
    key = match.group("key")
    if component is None or component == ctx.component:
        target = ctx.component
    elif component in ctx.dependencies:
        target = component
    else:
        return original
    if namespace == "iot":
        return ctx.thing_name if key == "thingName" and component is None else original
    if namespace == "kernel":
        return str(ctx.root) if key == "rootPath" and component is None else original
    if namespace == "configuration":
        config = ctx.configurations.get(target)
        if config is None:
            return original
        found, value = json_pointer_get(config, key)
        return _as_text(value) if found else original
    paths = ctx.paths.get(target)
    if paths is None:
        return original
    if namespace == "artifacts" and key == "path":
        return str(paths.artifacts)
    if namespace == "artifacts" and key == "decompressedPath":
        return str(paths.decompressed)
    if namespace == "work" and key == "path":
        return str(paths.work)
    return original


def interpolate(text: str, ctx: InterpolationContext) -> str:
    """Replace every known recipe variable in `text`; unknown ones stay verbatim."""
    return _VARIABLE.sub(lambda m: _resolve(m, ctx), text)


def interpolate_tree(value: Any, ctx: InterpolationContext) -> Any:
    """Interpolate every string (keys included) in nested dicts/lists, e.g. accessControl."""
    if isinstance(value, str):
        return interpolate(value, ctx)
    if isinstance(value, dict):
        return {interpolate_tree(k, ctx): interpolate_tree(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_tree(v, ctx) for v in value]
    return value
