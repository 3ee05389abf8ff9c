"""Helpers for install tests: real wheels built offline, an artifact folder, its Install step.

The wheels are written with zipfile (a wheel is a zip with METADATA/WHEEL/RECORD), so the tests
need no network and no package cache; pip installs them exactly as it would any index wheel.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENVINSTALL = REPO / "shared" / "envinstall.py"


def make_wheel(
    folder: Path, name: str, version: str, tag: str = "py3-none-any", requires: tuple = ()
) -> Path:
    """Write a minimal valid wheel whose module `name` has VERSION = version."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {req}\n" for req in requires)
    pure = "true" if tag.endswith("none-any") else "false"
    files = {
        f"{module}/__init__.py": f'VERSION = "{version}"\n',
        f"{info}/METADATA": metadata,
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: vqi-tests\nRoot-Is-Purelib: {pure}\n"
        f"Tag: {tag}\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{module}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@dataclass
class App:
    """An unpacked component artifact and its Greengrass work folder."""

    path: Path
    work: Path

    def require(self, text: str) -> None:
        (self.path / "requirements.txt").write_text(text)

    @property
    def link(self) -> Path:
        return self.work / "venv"

    @property
    def venvs(self) -> Path:
        return self.work / "venvs"

    def command(self, python: str = sys.executable) -> list[str]:
        return [python, "-u", str(ENVINSTALL), "--app", str(self.path), "--work", str(self.work)]

    def install(self, env: dict, python: str = sys.executable) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(python), env=env, capture_output=True, text=True, timeout=120
        )

    def probe_version(self) -> str:
        """What Run would see: the linked interpreter importing the installed package."""
        out = subprocess.run(
            [str(self.link / "bin" / "python"), "-c", "import vqi_probe; print(vqi_probe.VERSION)"],
            capture_output=True, text=True, timeout=60, check=True,
        )
        return out.stdout.strip()


def find_python(minor: int) -> str | None:
    """A working CPython 3.<minor> on this machine (PATH or pyenv), or None."""
    candidates = [shutil.which(f"python3.{minor}")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob(f"3.{minor}.*/bin/python3"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[1])"],
            capture_output=True, text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == str(minor):
            return candidate
    return None
