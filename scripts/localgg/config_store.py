"""Per-component configuration trees, with merge updates and change notifications.

Semantics follow the nucleus: objects are containers, anything else (lists included) is a leaf;
an update merges an object into the container at ``key_path`` (or sets the leaf at
``key_path`` to a non-object value); every leaf remembers the timestamp of its last write and
ignores an older write; subscribers hear one event per leaf whose value actually changed, with
that leaf's full key path. Thread-safe: callbacks run outside the lock on the caller's thread.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KeyPath = tuple[str, ...]
ChangeCallback = Callable[[str, list[str]], None]


class ConfigError(ValueError):
    """An update the store refuses (bad key path, leaf in the way, ...)."""


class ConfigNotFoundError(KeyError):
    """No such component, or nothing at that key path."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class _Subscription:
    component: str
    key_path: KeyPath
    callback: ChangeCallback


def _check_key_path(key_path: Sequence[str] | None) -> KeyPath:
    if key_path is None:
        return ()
    if isinstance(key_path, str) or not all(isinstance(k, str) and k for k in key_path):
        raise ConfigError(f"keyPath must be a list of non-empty strings, got {key_path!r}")
    return tuple(key_path)


class ConfigStore:
    """Configuration of every registered component."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._trees: dict[str, dict[str, Any]] = {}
        self._stamps: dict[str, dict[KeyPath, float]] = {}
        self._subs: dict[int, _Subscription] = {}
        self._ids = itertools.count(1)

    def add_component(self, name: str, configuration: Mapping[str, Any] | None) -> None:
        """Register (or replace) a component's whole configuration."""
        if configuration is not None and not isinstance(configuration, Mapping):
            raise ConfigError(f"configuration of {name} must be an object")
        with self._lock:
            self._trees[name] = copy.deepcopy(dict(configuration or {}))
            self._stamps[name] = {}

    def replace(self, name: str, configuration: Mapping[str, Any]) -> list[list[str]]:
        """A deployment's new configuration for a registered component: the tree is replaced,
        and subscribers hear each leaf that changed, appeared or went away (the nucleus's
        updateMap with a reset fires `changed` and `removed` events alike)."""
        if not isinstance(configuration, Mapping):
            raise ConfigError(f"configuration of {name} must be an object")
        new = copy.deepcopy(dict(configuration))
        with self._lock:
            old = self._tree(name)
            changed = sorted(_leaf_differences(old, new, ()))
            self._trees[name] = new
            now = time.time()
            self._stamps[name] = {path: now for path in _leaves(new, ())}
            subs = [s for s in self._subs.values() if s.component == name]
        for leaf in changed:
            for sub in subs:
                n = min(len(sub.key_path), len(leaf))
                if sub.key_path[:n] == leaf[:n]:
                    sub.callback(name, list(leaf))
        return [list(p) for p in changed]

    def has_component(self, name: str) -> bool:
        with self._lock:
            return name in self._trees

    def get(self, name: str, key_path: Sequence[str] | None = None) -> Any:
        """Deep copy of the value at ``key_path`` (the whole tree when empty)."""
        path = _check_key_path(key_path)
        with self._lock:
            node: Any = self._tree(name)
            for i, key in enumerate(path):
                if not isinstance(node, dict) or key not in node:
                    raise ConfigNotFoundError(
                        f"key path {list(path[:i + 1])} not found in configuration of {name}")
                node = node[key]
            return copy.deepcopy(node)

    def update(self, name: str, key_path: Sequence[str] | None, value_to_merge: Any,
               timestamp: float | None = None) -> list[list[str]]:
        """Merge ``value_to_merge`` at ``key_path``; return the key paths of changed leaves."""
        return self.update_checked(name, key_path, value_to_merge, timestamp)[0]

    def update_checked(self, name: str, key_path: Sequence[str] | None, value_to_merge: Any,
                       timestamp: float | None = None) -> tuple[list[list[str]], bool]:
        """Like ``update``; also says whether some leaf kept a newer value (stale write)."""
        path = _check_key_path(key_path)
        stamp = time.time() if timestamp is None else float(timestamp)
        changed: list[KeyPath] = []
        stale: list[KeyPath] = []
        with self._lock:
            tree = self._tree(name)
            stamps = self._stamps[name]
            if isinstance(value_to_merge, Mapping):
                container = self._container(tree, path, name)
                self._merge(container, path, value_to_merge, stamp, stamps, changed, stale)
            else:
                if not path:
                    raise ConfigError("valueToMerge must be an object when keyPath is empty")
                parent = self._container(tree, path[:-1], name)
                self._set_leaf(parent, path, value_to_merge, stamp, stamps, changed, stale)
            subs = list(self._subs.values())
        for leaf in changed:
            for sub in subs:
                if sub.component != name:
                    continue
                n = min(len(sub.key_path), len(leaf))
                if sub.key_path[:n] == leaf[:n]:
                    sub.callback(name, list(leaf))
        return [list(p) for p in changed], bool(stale)

    def subscribe(self, name: str, key_path: Sequence[str] | None,
                  callback: ChangeCallback) -> int:
        """Call ``callback(component, leaf_path)`` for changes at or below ``key_path``."""
        path = _check_key_path(key_path)
        with self._lock:
            self._tree(name)
            token = next(self._ids)
            self._subs[token] = _Subscription(name, path, callback)
            return token

    def unsubscribe(self, token: int) -> None:
        with self._lock:
            self._subs.pop(token, None)

    # -- internals -----------------------------------------------------------------------

    def _tree(self, name: str) -> dict[str, Any]:
        try:
            return self._trees[name]
        except KeyError:
            raise ConfigNotFoundError(f"component {name} is not registered") from None

    @staticmethod
    def _container(tree: dict[str, Any], path: KeyPath, name: str) -> dict[str, Any]:
        node = tree
        for i, key in enumerate(path):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                raise ConfigError(
                    f"key path {list(path[:i + 1])} of {name} is a value, not an object")
            node = child
        return node

    def _merge(self, container: dict[str, Any], path: KeyPath, value: Mapping[str, Any],
               stamp: float, stamps: dict[KeyPath, float], changed: list[KeyPath],
               stale: list[KeyPath]) -> None:
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"configuration keys must be non-empty strings, got {key!r}")
            child_path = path + (key,)
            if isinstance(item, Mapping):
                child = container.get(key)
                if not isinstance(child, dict):  # a new (or replaced) container: not an event
                    child = container[key] = {}
                self._merge(child, child_path, item, stamp, stamps, changed, stale)
            else:
                self._set_leaf(container, child_path, item, stamp, stamps, changed, stale)

    @staticmethod
    def _set_leaf(container: dict[str, Any], path: KeyPath, value: Any, stamp: float,
                  stamps: dict[KeyPath, float], changed: list[KeyPath],
                  stale: list[KeyPath]) -> None:
        key = path[-1]
        if isinstance(container.get(key), dict):
            raise ConfigError(f"key path {list(path)} is an object; merge an object into it")
        if stamp < stamps.get(path, float("-inf")):
            stale.append(path)  # an older write loses, as on the nucleus
            return
        stamps[path] = stamp
        if key in container and container[key] == value:
            return
        container[key] = copy.deepcopy(value)
        changed.append(path)


def _leaves(tree: Mapping[str, Any], path: KeyPath) -> set[KeyPath]:
    out: set[KeyPath] = set()
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out |= _leaves(value, path + (key,))
        else:
            out.add(path + (key,))
    return out


def _leaf_differences(old: Mapping[str, Any], new: Mapping[str, Any],
                      path: KeyPath) -> set[KeyPath]:
    """Key paths of leaves that differ between two trees (changed, added or removed)."""
    out: set[KeyPath] = set()
    for key in set(old) | set(new):
        here = path + (key,)
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out |= _leaf_differences(a, b, here)
        elif key not in old or key not in new or a != b:
            out |= _leaves({key: a}, path) if isinstance(a, Mapping) else {here}
            if isinstance(b, Mapping):
                out |= _leaves({key: b}, path)
    return out
