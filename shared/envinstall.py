#!/usr/bin/env python3
"""Install step of every VQI Python component: a pinned, reusable, atomic virtual environment.

Run by the recipe's Install script with the device's system ``python3``:

    python3 -u <app>/shared/envinstall.py --app <app> --work <work>

The environment lives in ``<root>/<key>`` where ``key`` hashes requirements.txt, the Python version,
implementation, machine, C library and (when bundled) the wheel manifest, so a code-only update
reuses the environment: libraries change rarely, code often. ``<root>`` is ``$VQI_VENV_CACHE`` when
set (the local runtime shares keyed environments across runs) else ``<work>/venvs``.
``<work>/venv`` is a symlink that Run uses; it only ever points at a complete environment because
each environment is built in ``<key>.tmp-<pid>``, marked complete, then renamed into place, and the
link is swapped with ``os.replace``. A killed install leaves only a ``.tmp-*`` folder that the next
install removes. Under ``<work>/venvs`` the current and previous environments are kept (a rollback
reuses the previous one instantly); a shared ``$VQI_VENV_CACHE`` is never pruned here, because
other components or runs may use its environments.

With ``<app>/wheels/manifest.json`` (built by ``vqitools.wheels``) pip runs with ``--no-index``
against the bundled wheels only, ignoring the device's pip configuration.

Stdlib only and deliberately free of ``from __future__ import annotations``, walrus and other new
syntax, so that an old interpreter gets as far as the version check and prints what to install.
"""

import argparse
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

FORMAT = "1"  # part of every key: bump it to make every device rebuild its environments
MIN_PYTHON = (3, 9)
MAX_TESTED_PYTHON = (3, 12)
MARKER = ".complete"
LAST_USED = ".last-used"
LINK_NAME = "venv"
KEEP_ENVS = 2  # the current environment and the previous one (instant rollback)
EXIT_BAD_PYTHON = 3
EXIT_BAD_WHEELS = 4
EXIT_PIP_FAILED = 5

INSTALL_HINT = (
    "Install CPython {need}-{tested} with its venv module and make it the `python3` on the PATH "
    "of the Greengrass nucleus (Debian/Ubuntu/Raspberry Pi OS: `sudo apt-get install python3 "
    "python3-venv`; Amazon Linux 2023/RHEL 9: `sudo dnf install python3.11`, then link "
    "python3 to it)."
)


class InstallError(Exception):
    """A failure with a message for the operator and a process exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def log(message: str) -> None:
    print("[envinstall] " + message, flush=True)


def version_text(version: Tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def parse_version(text: str) -> Tuple[int, int]:
    parts = text.strip().split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts[:2]):
        raise InstallError("bad Python version {!r}: expected MAJOR.MINOR".format(text), 2)
    return int(parts[0]), int(parts[1])


def check_python(minimum: Tuple[int, int]) -> None:
    """Refuse interpreters the components cannot run on, saying exactly what to install."""
    found = tuple(sys.version_info[:3])
    hint = INSTALL_HINT.format(need=version_text(minimum), tested=version_text(MAX_TESTED_PYTHON))
    if sys.implementation.name != "cpython":
        raise InstallError(
            "{} {} at {} is not CPython; the pinned wheels are CPython builds. {}".format(
                sys.implementation.name, version_text(found), sys.executable, hint
            ),
            EXIT_BAD_PYTHON,
        )
    if found[:2] < minimum:
        raise InstallError(
            "Python {} at {} is too old: this component needs Python >= {}. {}".format(
                version_text(found), sys.executable, version_text(minimum), hint
            ),
            EXIT_BAD_PYTHON,
        )
    if found[:2] > MAX_TESTED_PYTHON:
        log(
            "warning: Python {} is newer than the tested {}; continuing, but pip may find no "
            "wheels for the pinned versions".format(
                version_text(found), version_text(MAX_TESTED_PYTHON)
            )
        )
    try:
        import ensurepip  # noqa: F401  (Debian ships it only in python3-venv)
        import venv  # noqa: F401
    except ImportError as exc:
        raise InstallError(
            "Python {} at {} cannot create virtual environments ({}). Debian/Ubuntu: "
            "`sudo apt-get install python{}.{}-venv` (or python3-venv).".format(
                version_text(found), sys.executable, exc, found[0], found[1]
            ),
            EXIT_BAD_PYTHON,
        ) from exc


def machine() -> str:
    """The CPU architecture in wheel-tag spelling (x86_64, aarch64)."""
    name = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name)


def glibc_version() -> Optional[Tuple[int, int]]:
    lib, version = platform.libc_ver()
    if lib != "glibc" or not version:
        return None
    try:
        return parse_version(version)
    except InstallError:
        return None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def env_key(requirements: bytes, manifest: Optional[bytes]) -> str:
    """Name of the environment for these requirements on this interpreter and machine."""
    lib, lib_version = platform.libc_ver()
    parts = [
        FORMAT,
        sys.implementation.name,
        version_text(tuple(sys.version_info[:2])),
        machine(),
        lib + lib_version,
        os.path.realpath(sys.base_prefix),
        sha256_bytes(requirements),
        sha256_bytes(manifest) if manifest is not None else "index",
    ]
    digest = sha256_bytes("\n".join(parts).encode("utf-8"))[:16]
    tag = "{}{}{}".format(sys.implementation.cache_tag[:2], *sys.version_info[:2])
    return "{}-{}-{}".format(tag, machine(), digest)


class Bundle(NamedTuple):
    """The artifact's wheels for this device: folder, manifest bytes, file name -> sha256."""

    folder: str
    manifest: bytes
    files: Dict[str, str]


def bundled_wheels(app: str, requirements: bytes) -> Optional[Bundle]:
    """The bundle when the artifact has wheels/manifest.json, else None (install from the index).

    A bundle that does not fit this interpreter, machine or C library is an error, not a silent
    fallback to the index: an offline device would fail later and less clearly.
    """
    folder = os.path.join(app, "wheels")
    manifest_path = os.path.join(folder, "manifest.json")
    if not os.path.isfile(manifest_path):
        return None
    with open(manifest_path, "rb") as handle:
        raw = handle.read()
    try:
        manifest = json.loads(raw.decode("utf-8"))
        targets = manifest["targets"]
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        message = "unreadable {}: {}".format(manifest_path, exc)
        raise InstallError(message, EXIT_BAD_WHEELS) from exc
    if manifest.get("requirements_sha256") != sha256_bytes(requirements):
        raise InstallError(
            "{} was built for another requirements.txt; rebuild the artifact with "
            "--bundle-wheels".format(manifest_path),
            EXIT_BAD_WHEELS,
        )
    python = version_text(tuple(sys.version_info[:2]))
    here = "CPython {} on linux {}".format(python, machine())
    covered = ", ".join(
        "CPython {} {}{}".format(
            t.get("python"), t.get("machine"), "" if t.get("complete") else " (incomplete)"
        )
        for t in targets
    )
    target = None
    for candidate in targets:
        if candidate.get("python") == python and candidate.get("machine") == machine():
            target = candidate
    if target is None or not target.get("complete"):
        raise InstallError(
            "the bundled wheels do not cover {}; they cover: {}. Use a Python the bundle covers, "
            "or deploy the artifact built without --bundle-wheels (installs from the index)".format(
                here, covered or "nothing"
            ),
            EXIT_BAD_WHEELS,
        )
    need = target.get("glibc")
    have = glibc_version()
    if need:
        need_version = parse_version(need)
        if have is None or have < need_version:
            raise InstallError(
                "the bundled wheels for {} need glibc >= {}; this device has {}".format(
                    here, need, version_text(have) if have else "no glibc"
                ),
                EXIT_BAD_WHEELS,
            )
    wanted = {}
    for name in target.get("files", []):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise InstallError("bundled wheel missing: {}".format(path), EXIT_BAD_WHEELS)
        wanted[name] = files.get(name, "")
    log("bundled wheels cover {}: {} wheels, pip will run with --no-index".format(
        here, len(wanted)))
    return Bundle(folder, raw, wanted)


def verify_bundle(bundle: "Bundle") -> None:
    """Check the wheels against the manifest before pip uses them (only when building)."""
    for name, expected in sorted(bundle.files.items()):
        path = os.path.join(bundle.folder, name)
        if sha256_file(path) != expected:
            message = "bundled wheel corrupt (sha256 mismatch): {}".format(path)
            raise InstallError(message, EXIT_BAD_WHEELS)


def lock(path: str) -> int:
    """Hold an exclusive flock on `path`; retries if the file was replaced while waiting."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            log("waiting for another install of the same environment ({})".format(path))
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def try_lock(path: str) -> Optional[int]:
    """A non-blocking flock, or None when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def is_complete(env: str, key: str) -> bool:
    """True for a finished environment whose base interpreter still exists."""
    try:
        with open(os.path.join(env, MARKER), "r") as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return False
    return marker.get("key") == key and os.path.exists(os.path.join(env, "bin", "python"))


def remove_tree(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


def remove_stale(root: str, key: str) -> None:
    """Delete leftovers of interrupted installs of `key` (caller holds its lock)."""
    prefix = key + ".tmp-"
    for name in sorted(os.listdir(root)):
        if name.startswith(prefix):
            log("removing interrupted install {}".format(os.path.join(root, name)))
            remove_tree(os.path.join(root, name))
    final = os.path.join(root, key)
    if os.path.lexists(final):
        log("removing unusable environment {}".format(final))
        remove_tree(final)


def _die_with_parent() -> None:
    """Child setup: SIGKILL pip when the installer dies, so no orphan writes into a removed dir."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run(command: List[str], env: Optional[Dict[str, str]] = None) -> int:
    log("$ " + " ".join(command))
    return subprocess.call(command, env=env, preexec_fn=_die_with_parent)


def pip_environment(offline: bool) -> Dict[str, str]:
    """Index installs honour the device's pip settings (mirror, proxy); bundled ones ignore them."""
    env = dict(os.environ)
    env["PYTHONNOUSERSITE"] = "1"
    if offline:
        for name in list(env):
            if name.startswith("PIP_"):
                del env[name]
        env["PIP_CONFIG_FILE"] = os.devnull
    return env


def relocate(tmp: str, final: str) -> None:
    """Rewrite the build path in bin/ scripts and pyvenv.cfg: venvs hard-code their location."""
    old, new = tmp.encode(), final.encode()
    bindir = os.path.join(tmp, "bin")
    paths = [os.path.join(bindir, name) for name in os.listdir(bindir)]
    paths.append(os.path.join(tmp, "pyvenv.cfg"))
    for path in paths:
        if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) > 1 << 20:
            continue
        with open(path, "rb") as handle:
            data = handle.read()
        if old in data:
            mode = os.stat(path).st_mode
            with open(path, "wb") as handle:
                handle.write(data.replace(old, new))
            os.chmod(path, mode)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def has_requirements(requirements: bytes) -> bool:
    """False for an empty or comment-only requirements file (pip refuses those)."""
    for line in requirements.decode("utf-8", "replace").splitlines():
        if line.strip() and not line.strip().startswith("#"):
            return True
    return False


def build(root: str, key: str, requirements: bytes, bundle: Optional[Bundle]) -> str:
    """Create the environment in a private temp dir, then publish it with one rename."""
    wheels = None
    if bundle is not None:
        verify_bundle(bundle)
        wheels = bundle.folder
    final = os.path.join(root, key)
    tmp = "{}.tmp-{}".format(final, os.getpid())
    started = time.time()
    log("creating virtual environment {} with {}".format(tmp, sys.executable))
    code = run([sys.executable, "-m", "venv", tmp])
    if code != 0:
        remove_tree(tmp)
        raise InstallError(
            "`{} -m venv` failed (exit {}). Debian/Ubuntu: `sudo apt-get install python{}.{}-venv`."
            .format(sys.executable, code, *sys.version_info[:2]),
            EXIT_BAD_PYTHON,
        )
    pinned = os.path.join(tmp, "vqi-requirements.txt")  # exactly the bytes the key hashes
    with open(pinned, "wb") as handle:
        handle.write(requirements)
    python = os.path.join(tmp, "bin", "python")
    command = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    if b"--hash" in requirements:
        command.append("--require-hashes")
    if wheels is not None:
        command += ["--no-index", "--find-links", wheels, "--only-binary", ":all:"]
    command += ["-r", pinned]
    code = 0
    if has_requirements(requirements):
        log("installing requirements with pip ({})".format(
            "bundled wheels, --no-index" if wheels else "package index"))
        code = run(command, env=pip_environment(offline=wheels is not None))
    if code != 0:
        remove_tree(tmp)
        raise InstallError(
            "pip install failed (exit {}); see the pip output above. Nothing was changed: {} "
            "still points at the previous environment, if any.".format(code, LINK_NAME),
            EXIT_PIP_FAILED,
        )
    relocate(tmp, final)
    marker = {
        "key": key,
        "python": sys.version.split()[0],
        "base_interpreter": sys.executable,
        "machine": machine(),
        "requirements_sha256": sha256_bytes(requirements),
        "bundled_wheels": wheels is not None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "install_seconds": round(time.time() - started, 1),
    }
    marker_path = os.path.join(tmp, MARKER)
    with open(marker_path, "w") as handle:
        json.dump(marker, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, final)
    fsync_dir(root)
    log("environment ready in {:.1f} s: {}".format(time.time() - started, final))
    return final


def point_link(work: str, target: str) -> None:
    """Atomically repoint <work>/venv at `target` (temp link + os.replace)."""
    link = os.path.join(work, LINK_NAME)
    if os.path.exists(link) and not os.path.islink(link):
        aside = "{}.old-{}".format(link, os.getpid())
        log("moving aside a non-link {} (not made by envinstall)".format(link))
        os.rename(link, aside)
        remove_tree(aside)
    tmp_link = "{}.link-{}".format(link, os.getpid())
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(target, tmp_link)
    os.replace(tmp_link, link)
    fsync_dir(work)


def mark_used(env: str) -> None:
    """Record when `env` was last made current; pruning keeps the most recently used ones."""
    with open(os.path.join(env, LAST_USED), "w") as handle:
        handle.write(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))


def last_used(env: str) -> float:
    try:
        return os.stat(os.path.join(env, LAST_USED)).st_mtime
    except OSError:
        return 0.0


def prune(root: str, current: str) -> None:
    """Keep `current` and the most recently used other environment (the rollback target);
    remove older ones whose lock nobody holds. Only for a private root, never a shared cache."""
    others = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name.endswith(".lock") or ".tmp-" in name or not os.path.isdir(path):
            continue
        if os.path.realpath(path) != os.path.realpath(current):
            others.append(path)
    others.sort(key=last_used, reverse=True)
    for path in others[KEEP_ENVS - 1:]:
        lock_path = path + ".lock"
        fd = try_lock(lock_path)
        if fd is None:
            continue
        try:
            log("removing old environment {}".format(path))
            remove_tree(path)
            os.unlink(lock_path)
        finally:
            os.close(fd)


def install(app: str, work: str, minimum: Tuple[int, int]) -> str:
    check_python(minimum)
    requirements_path = os.path.join(app, "requirements.txt")
    if not os.path.isdir(app):
        raise InstallError("no such app folder {}".format(app), 2)
    requirements = b""
    if os.path.isfile(requirements_path):
        with open(requirements_path, "rb") as handle:
            requirements = handle.read()
    else:
        log("no {}: the environment gets no third-party packages".format(requirements_path))
    bundle = bundled_wheels(app, requirements)
    key = env_key(requirements, bundle.manifest if bundle else None)
    shared_cache = os.environ.get("VQI_VENV_CACHE")
    root = os.path.abspath(shared_cache or os.path.join(work, "venvs"))
    os.makedirs(root, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    final = os.path.join(root, key)
    log("Python {} ({}), environment key {}".format(
        sys.version.split()[0], sys.executable, key))
    fd = lock(final + ".lock")
    try:
        if is_complete(final, key):
            log("reusing complete environment {} (nothing to install)".format(final))
        else:
            remove_stale(root, key)
            build(root, key, requirements, bundle)
        point_link(work, final)
        mark_used(final)
        log("{} -> {}".format(os.path.join(work, LINK_NAME), final))
    finally:
        os.close(fd)
    if not shared_cache:
        prune(root, final)
    return final


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--app", required=True, help="the unpacked artifact folder")
    parser.add_argument("--work", required=True, help="the component's {work:path}")
    parser.add_argument(
        "--min-python",
        default=os.environ.get("VQI_MIN_PYTHON", version_text(MIN_PYTHON)),
        help="oldest acceptable Python MAJOR.MINOR (default %(default)s, env VQI_MIN_PYTHON)",
    )
    args = parser.parse_args(argv)
    try:
        minimum = parse_version(args.min_python)
        install(os.path.abspath(args.app), os.path.abspath(args.work), minimum)
    except InstallError as exc:
        print("[envinstall] ERROR: {}".format(exc), file=sys.stderr, flush=True)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
