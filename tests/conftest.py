"""Suite-wide fixtures.

Run as root (CI, containers), the local runtime runs every component as ggc_user, as a core device
does. pytest makes its temporary folders 0700, which nobody else can enter, while a device's
/greengrass/v2 is 0755; so, as root, every temporary folder is opened to other users (0777) and
the folders above it made traversable (o+x), so that component processes can reach the runtime
roots and write the marker files tests ask them to write.

Tests that need the model toolchain (torch, ultralytics: requirements-toolchain.txt) carry the
`toolchain` marker, or use the `dev_model_dir` fixture, which exports a model with ultralytics.
With VQI_TOOLCHAIN=0 (the publish build, which installs no toolchain) they are deselected, and
pytest's summary counts them; otherwise a missing toolchain fails them.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Dict

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "toolchain: needs torch/ultralytics "
                            "(requirements-toolchain.txt); deselected when VQI_TOOLCHAIN=0")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    for item in items:
        if "dev_model_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.toolchain)
    if os.environ.get("VQI_TOOLCHAIN", "1") != "0":
        return
    kept = [i for i in items if i.get_closest_marker("toolchain") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


def _traversable(path: Path) -> None:
    for folder in (path, *path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(folder, stat.S_IMODE(mode) | stat.S_IXOTH)


@pytest.fixture(scope="session", autouse=True)
def _temporary_folders_reachable_by_component_users(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if os.geteuid() != 0:
        yield
        return
    _traversable(tmp_path_factory.getbasetemp())
    original = pytest.TempPathFactory.mktemp

    def mktemp(self: pytest.TempPathFactory, basename: str, numbered: bool = True) -> Path:
        path = original(self, basename, numbered)
        os.chmod(path, 0o777)
        return path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pytest.TempPathFactory, "mktemp", mktemp)
        yield


@pytest.fixture(scope="session")
def assert_valid_metrics() -> Callable[[Dict[str, Any]], None]:
    """Checks a component's metrics message against shared/schemas/metrics.schema.json."""
    import jsonschema

    path = Path(__file__).resolve().parents[1] / "shared" / "schemas" / "metrics.schema.json"
    schema = json.loads(path.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())

    def check(message: Dict[str, Any]) -> None:
        errors = sorted(validator.iter_errors(message), key=lambda e: list(e.path))
        assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors)

    return check


@pytest.fixture(scope="session")
def assert_valid_message() -> Callable[[str, Dict[str, Any]], None]:
    """`check(schema_file, message)` against shared/schemas/<schema_file>; references between
    the schemas (a disagreement holds two results) resolve by their `$id`."""
    import jsonschema
    from referencing import Registry, Resource

    folder = Path(__file__).resolve().parents[1] / "shared" / "schemas"
    schemas = {p.name: json.loads(p.read_text()) for p in folder.glob("*.schema.json")}
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values())

    def check(name: str, message: Dict[str, Any]) -> None:
        jsonschema.Draft202012Validator.check_schema(schemas[name])
        validator = jsonschema.Draft202012Validator(
            schemas[name], registry=registry, format_checker=jsonschema.FormatChecker())
        errors = sorted(validator.iter_errors(message), key=lambda e: list(e.path))
        assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors)

    return check
