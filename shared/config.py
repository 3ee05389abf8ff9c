"""Typed component configuration read from the recipe's merged configuration.

Each component declares a dataclass whose fields carry the recipe key (PascalCase, as operators see
it in the console) and an optional check. Wrong values fail with one message naming every bad key,
so a live update with a typo is rejected whole and the previous configuration stays in force.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """Configuration values that cannot be used; the message names each bad key."""


def setting(
    key: str, default: Any, check: Optional[Callable[[Any], bool]] = None, hint: str = "",
    secret: bool = False,
) -> Any:
    """A dataclass field bound to recipe key `key`; `check` returns True for an acceptable value.
    A `secret` value is never repeated in an error message (it would reach the log)."""
    factory = (lambda d=default: type(d)(d)) if isinstance(default, (list, dict)) else None
    meta = {"key": key, "check": check, "hint": hint, "secret": secret}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _coerce(value: Any, default: Any) -> Any:
    kind = type(default)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise TypeError("expected true or false")
    if isinstance(default, (int, float)):
        if isinstance(value, bool):
            raise TypeError(f"expected a {kind.__name__}")
        if isinstance(value, (int, float)):
            if kind is int and float(value) != int(value):
                raise TypeError("expected an integer")
            return kind(value)
        if isinstance(value, str):
            return kind(value.strip())  # console merges sometimes carry numbers as strings
        raise TypeError(f"expected a {kind.__name__}")
    if isinstance(default, str):
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise TypeError("expected a list")
        return value
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise TypeError("expected an object")
        return value
    return value


def load(cls: Type[T], raw: Dict[str, Any]) -> T:
    """Build `cls` from a configuration mapping, applying defaults and checks."""
    values: Dict[str, Any] = {}
    errors: List[str] = []
    for f in dataclasses.fields(cls):
        key = f.metadata.get("key", f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if key not in raw or raw[key] is None:
            values[f.name] = default
            continue
        shown = "<redacted>" if f.metadata.get("secret") else repr(raw[key])
        try:
            value = _coerce(raw[key], default)
        except (TypeError, ValueError) as exc:
            errors.append(f"{key}={shown}: {exc}")
            continue
        check = f.metadata.get("check")
        if check is not None and not check(value):
            hint = f.metadata.get("hint") or "value out of range"
            errors.append(f"{key}={shown}: {hint}")
            continue
        values[f.name] = value
    if errors:
        raise ConfigError("invalid configuration: " + "; ".join(errors))
    return cls(**values)
