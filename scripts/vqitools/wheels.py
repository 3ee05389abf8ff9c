"""Bundle the pinned wheels of a component for offline devices (``--bundle-wheels`` builds).

Factory devices often have no route to a package index. ``bundle_wheels`` downloads, for every
target (manylinux platform x CPython version), exactly the wheels that requirements.txt pins into
one flat folder plus ``manifest.json``; ``shared/envinstall.py`` then installs on the device with
``pip --no-index`` from that folder only. The folder is flat because pip picks the wheel matching
the running interpreter and pure-Python wheels are then stored once for all targets.

Markers (``; python_version < "3.10"``) are evaluated per target here, because pip evaluates them
for the interpreter it runs on, not for ``--python-version``. Each wheel is fetched with
``--no-deps`` and its own requirements are then checked against the pins, so an unpinned
transitive dependency is reported at build time instead of failing on an offline device.

Targets that cannot be satisfied are reported (package, version, target) and marked incomplete in
the manifest; the device refuses an incomplete target with a message naming what the bundle covers.

Builds: ``build-component --bundle-wheels`` calls ``bundler_for_build()``.
CLI: ``python3 -m vqitools.wheels REQUIREMENTS DEST [--platform TAG ...] [--python X.Y ...]``
(run with ``PYTHONPATH=scripts``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from email.parser import Parser
from pathlib import Path
from typing import Callable

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

DEFAULT_PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_28_aarch64"]
DEFAULT_PYTHON_VERSIONS = ["3.9", "3.10", "3.11", "3.12"]
MANIFEST_FORMAT = 1
OLDEST_MANYLINUX_MINOR = 17  # manylinux2014; older devices are out of scope
LEGACY_MANYLINUX = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
_LEGACY = re.compile(r"^(manylinux2014|manylinux2010|manylinux1)_(\w+)$")


class BundleError(ValueError):
    """Requirements or targets that cannot be bundled at all (not a missing wheel)."""


@dataclass(frozen=True)
class Pin:
    """One ``name==version`` line of requirements.txt, with its marker and hashes."""

    name: str
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]

    def line(self) -> str:
        return " ".join([f"{self.name}=={self.version}", *(f"--hash={h}" for h in self.hashes)])


@dataclass
class Target:
    """One platform x Python combination and what the bundle holds for it."""

    platform: str
    python: str
    machine: str
    glibc_ceiling: tuple[int, int]
    files: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.platform}"

    def marker_environment(self) -> dict[str, str]:
        return {
            "python_version": self.python,
            "python_full_version": f"{self.python}.0",
            "platform_machine": self.machine,
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "implementation_version": f"{self.python}.0",
            "extra": "",
        }

    def pip_platforms(self) -> list[str]:
        """Every manylinux tag this target's devices accept, most portable first (pip prefers
        earlier tags), so a bundle runs on the widest range of devices."""
        major, ceiling = self.glibc_ceiling
        legacy = {5: "manylinux1", 12: "manylinux2010", 17: "manylinux2014"}
        oldest = 5 if self.machine in ("x86_64", "i686") else OLDEST_MANYLINUX_MINOR
        tags = []
        for minor in range(oldest, ceiling + 1):
            if minor in legacy:
                tags.append(f"{legacy[minor]}_{self.machine}")
            tags.append(f"manylinux_{major}_{minor}_{self.machine}")
        return tags


def parse_target(platform: str, python: str) -> Target:
    """A Target from a pip platform tag (manylinux_2_28_x86_64, manylinux2014_aarch64)."""
    if not re.match(r"^3\.\d+$", python):
        raise BundleError(f"bad Python version {python!r}: expected 3.X")
    match = _MANYLINUX.match(platform)
    if match:
        glibc = (int(match.group(1)), int(match.group(2)))
        arch = match.group(3)
    else:
        legacy = _LEGACY.match(platform)
        if not legacy:
            raise BundleError(f"unsupported platform {platform!r}: use manylinux_2_X_<arch>")
        glibc = (2, max(LEGACY_MANYLINUX[legacy.group(1)], OLDEST_MANYLINUX_MINOR))
        arch = legacy.group(2)
    if glibc < (2, OLDEST_MANYLINUX_MINOR):
        raise BundleError(f"{platform}: glibc older than 2.{OLDEST_MANYLINUX_MINOR} unsupported")
    return Target(platform=platform, python=python, machine=arch, glibc_ceiling=glibc)


def parse_requirements(text: str) -> list[Pin]:
    """Exact pins only: a bundle must be reproducible, so ranges are an error."""
    pins = []
    logical = re.sub(r"\\\r?\n", " ", text)
    for number, raw in enumerate(logical.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        hashes = tuple(re.findall(r"--hash[=\s]+(\S+)", line))
        spec = re.sub(r"--hash[=\s]+\S+", "", line).strip()
        if spec.startswith("-"):
            raise BundleError(f"requirements line {number}: options are not supported: {spec}")
        try:
            req = Requirement(spec)
        except InvalidRequirement as exc:
            raise BundleError(f"requirements line {number}: {exc}") from exc
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            raise BundleError(f"requirements line {number}: {spec!r} is not an exact == pin")
        pins.append(Pin(req.name, specs[0].version, req.marker, hashes))
    return pins


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip_download(pins: list[Pin], target: Target, dest: Path) -> subprocess.CompletedProcess:
    dest.mkdir(parents=True, exist_ok=True)
    reqs = dest / "requirements.txt"
    reqs.write_text("".join(pin.line() + "\n" for pin in pins))
    abi = f"cp{target.python.replace('.', '')}"
    command = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
        "--no-deps", "--only-binary=:all:", "--dest", str(dest),
        "--python-version", target.python, "--implementation", "cp",
        "--abi", abi, "--abi", "abi3", "--abi", "none",
    ]
    for tag in target.pip_platforms():
        command += ["--platform", tag]
    command += ["-r", str(reqs)]
    result = subprocess.run(command, capture_output=True, text=True)
    reqs.unlink()
    return result


def _wheel_glibc(filename: str) -> tuple[int, int] | None:
    """The oldest glibc among a wheel's platform tags (None for pure-Python wheels)."""
    best = None
    for tag in parse_wheel_filename(filename)[3]:
        match = _MANYLINUX.match(tag.platform)
        legacy = _LEGACY.match(tag.platform)
        if match:
            level = (int(match.group(1)), int(match.group(2)))
        elif legacy:
            level = (2, LEGACY_MANYLINUX[legacy.group(1)])
        else:
            continue
        best = level if best is None else min(best, level)
    return best


def _wheel_requirements(path: Path) -> list[Requirement]:
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode("utf-8"))
    return [Requirement(value) for value in metadata.get_all("Requires-Dist") or []]


def _unpinned_dependencies(wheels: list[Path], pins: list[Pin], target: Target) -> list[str]:
    """Dependencies of the downloaded wheels that the pins do not satisfy for this target."""
    pinned = {canonicalize_name(pin.name): Version(pin.version) for pin in pins}
    problems = []
    env = target.marker_environment()
    for wheel in wheels:
        owner = parse_wheel_filename(wheel.name)
        for req in _wheel_requirements(wheel):
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            version = pinned.get(canonicalize_name(req.name))
            if version is None:
                problems.append(f"{req} (needed by {owner[0]} {owner[1]}) is not pinned")
            elif not req.specifier.contains(version, prereleases=True):
                problems.append(
                    f"{req.name}=={version} does not satisfy {req} (needed by {owner[0]})"
                )
    return problems


def _bundle_target(pins: list[Pin], target: Target, dest: Path, scratch: Path) -> dict[str, str]:
    """Download one target's wheels into `dest`; fills target.files/missing; returns hashes."""
    env = target.marker_environment()
    wanted = [pin for pin in pins if pin.marker is None or pin.marker.evaluate(env)]
    work = scratch / target.name
    result = _pip_download(wanted, target, work)
    if result.returncode != 0:
        for pin in wanted:  # find exactly which pins have no wheel for this target
            single = _pip_download([pin], target, work)
            if single.returncode != 0:
                target.missing.append(f"no wheel for {pin.name}=={pin.version}")
    wheels = sorted(work.glob("*.whl"))
    target.missing.extend(_unpinned_dependencies(wheels, wanted, target))
    hashes = {}
    for wheel in wheels:
        if not (dest / wheel.name).exists():
            shutil.copy2(wheel, dest / wheel.name)
        hashes[wheel.name] = _sha256(dest / wheel.name)
        target.files.append(wheel.name)
    return hashes


def bundle_wheels(
    requirements: Path,
    dest: Path,
    platforms: list[str] | None = None,
    python_versions: list[str] | None = None,
    log=print,
) -> dict:
    """Download the pinned wheels for every target into `dest` and write dest/manifest.json.

    The manifest has no timestamp, so an unchanged component keeps a byte-identical artifact.
    Returns the manifest: ``targets`` (each with ``complete``, ``missing``, ``files``, ``glibc``),
    ``files`` (name -> sha256) and ``missing`` (one line per unsatisfied target).
    """
    requirements = Path(requirements)
    dest = Path(dest)
    raw = requirements.read_bytes()
    pins = parse_requirements(raw.decode("utf-8"))
    targets = [
        parse_target(platform, python)
        for platform in (platforms or DEFAULT_PLATFORMS)
        for python in (python_versions or DEFAULT_PYTHON_VERSIONS)
    ]
    dest.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vqi-wheels-") as scratch:
        for target in targets:
            files.update(_bundle_target(pins, target, dest, Path(scratch)))
            state = "ok" if not target.missing else "INCOMPLETE: " + "; ".join(target.missing)
            log(f"wheels {target.name}: {len(target.files)} wheels, {state}")
    entries = []
    for target in targets:
        levels = [level for level in map(_wheel_glibc, target.files) if level]
        glibc = max(levels) if levels else None
        entries.append({
            "platform": target.platform,
            "python": target.python,
            "machine": target.machine,
            "implementation": "cp",
            "glibc": f"{glibc[0]}.{glibc[1]}" if glibc else None,
            "complete": not target.missing,
            "missing": target.missing,
            "files": sorted(target.files),
        })
    manifest = {
        "format": MANIFEST_FORMAT,
        "requirements_sha256": hashlib.sha256(raw).hexdigest(),
        "targets": entries,
        "files": dict(sorted(files.items())),
        "missing": [f"{t.name}: {m}" for t in targets for m in t.missing],
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    size = sum((dest / name).stat().st_size for name in files)
    log(f"wheels: {len(files)} files, {size / 1e6:.1f} MB in {dest} "
        f"({time.monotonic() - started:.0f} s)")
    return manifest


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name, "")
    return [item.strip() for item in value.split(",") if item.strip()] or None


def bundler_for_build() -> Callable[[Path, Path], None]:
    """The wheel step of ``build-component --bundle-wheels``.

    Targets come from VQI_BUNDLE_PLATFORMS / VQI_BUNDLE_PYTHONS (comma lists; defaults above).
    Missing combinations are printed and recorded in the manifest (the device then refuses them
    clearly); the build fails when no target is complete, or on any gap with VQI_BUNDLE_STRICT=1.
    """
    from vqitools.build import BuildError

    platforms = _env_list("VQI_BUNDLE_PLATFORMS")
    pythons = _env_list("VQI_BUNDLE_PYTHONS")
    strict = os.environ.get("VQI_BUNDLE_STRICT") == "1"

    def bundle(requirements: Path, dest: Path) -> None:
        try:
            manifest = bundle_wheels(requirements, dest, platforms, pythons)
        except BundleError as exc:
            raise BuildError(f"--bundle-wheels: {exc}") from exc
        for line in manifest["missing"]:
            print(f"wheels: missing {line}", file=sys.stderr)
        if not any(target["complete"] for target in manifest["targets"]):
            raise BuildError("--bundle-wheels: no target has wheels for every pin")
        if strict and manifest["missing"]:
            raise BuildError("--bundle-wheels: VQI_BUNDLE_STRICT=1 and some targets lack wheels")

    return bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bundle pinned wheels for offline installs.")
    parser.add_argument("requirements", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--platform", action="append", dest="platforms",
                        help=f"manylinux tag, repeatable (default {DEFAULT_PLATFORMS})")
    parser.add_argument("--python", action="append", dest="pythons",
                        help=f"CPython X.Y, repeatable (default {DEFAULT_PYTHON_VERSIONS})")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when any target lacks a wheel")
    args = parser.parse_args(argv)
    try:
        manifest = bundle_wheels(args.requirements, args.dest, args.platforms, args.pythons)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in manifest["missing"]:
        print(f"missing: {line}", file=sys.stderr)
    return 1 if args.strict and manifest["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
