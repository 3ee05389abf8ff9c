"""Write small components in the BUILT layout (what scripts/build-component produces) for tests."""

from __future__ import annotations

import io
import os
import shutil
import signal
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import yaml

from localgg.supervisor import SECURE_PATH

PLATFORM = {"os": "linux", "architecture": "/^(amd64|aarch64)$/"}
# As root, components run as ggc_user with sudo's PATH, as on a device; that user cannot enter
# /root, where this test run's interpreter may live, so component scripts use the system python3.
PYTHON = (shutil.which("python3", path=SECURE_PATH) or "python3") if os.geteuid() == 0 \
    else sys.executable
# Component scripts that import this venv's SDK run as the runtime's own user, which a device
# does only with runWithDefault.posixUser root: say so in the deployment.
SDK_PYTHON = sys.executable
AS_RUNTIME_USER = {"aws.greengrass.Nucleus": {"merge": {"runWithDefault": {"posixUser": "root"}}}} \
    if os.geteuid() == 0 else {}


def zip_bytes(members: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def write_built_component(
    components_dir: Path,
    name: str,
    lifecycle: dict[str, Any] | None = None,
    *,
    version: str = "1.0.0",
    dependencies: dict[str, str] | None = None,
    configuration: dict[str, Any] | None = None,
    files: dict[str, bytes | str] | None = None,
    zips: dict[str, dict[str, bytes | str]] | None = None,
    manifests: list[dict[str, Any]] | None = None,
) -> Path:
    """Write `<components_dir>/<short name>/greengrass-build/` as scripts/build-component does."""
    build = components_dir / name.rsplit(".", 1)[-1] / "greengrass-build"
    artifact_dir = build / "artifacts" / name / version
    artifact_dir.mkdir(parents=True, exist_ok=True)
    artifacts = []
    for file_name, data in (files or {}).items():
        (artifact_dir / file_name).write_bytes(data.encode() if isinstance(data, str) else data)
        artifacts.append({"URI": f"s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/{file_name}"})
    for zip_name, members in (zips or {}).items():
        (artifact_dir / zip_name).write_bytes(zip_bytes(members))
        artifacts.append({"URI": f"s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/{zip_name}",
                          "Unarchive": "ZIP"})
    recipe: dict[str, Any] = {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentPublisher": "Tests",
        "ComponentConfiguration": {"DefaultConfiguration": configuration or {}},
        "Manifests": manifests if manifests is not None else [
            {"Platform": PLATFORM, "Artifacts": artifacts, "Lifecycle": lifecycle or {}}
        ],
    }
    if dependencies:
        recipe["ComponentDependencies"] = {
            dep: {"VersionRequirement": ">=1.0.0", "DependencyType": kind}
            for dep, kind in dependencies.items()
        }
    (build / "recipes").mkdir(parents=True, exist_ok=True)
    (build / "recipes" / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return build


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
