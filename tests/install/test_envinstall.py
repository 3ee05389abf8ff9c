"""shared/envinstall.py: the Install step builds a keyed venv once, atomically, and reuses it."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .installkit import App, find_python

pytestmark = pytest.mark.timeout(300)


def envs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and ".tmp-" not in p.name)


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if ".tmp-" in p.name)


def test_second_install_of_unchanged_requirements_is_a_noop(app: App, pip_env):
    first = app.install(pip_env)
    assert first.returncode == 0, first.stderr
    target = os.readlink(app.link)
    marker = (Path(target) / ".complete").stat()

    second = app.install(pip_env)

    assert second.returncode == 0, second.stderr
    assert "reusing complete environment" in second.stdout
    assert "pip install" not in second.stdout and "-m venv" not in second.stdout
    assert os.readlink(app.link) == target
    assert (Path(target) / ".complete").stat().st_mtime_ns == marker.st_mtime_ns
    assert app.probe_version() == "1.0"


def test_changed_requirement_builds_a_new_environment_and_repoints_the_link(app: App, pip_env):
    assert app.install(pip_env).returncode == 0
    old = os.readlink(app.link)

    app.require("vqi-probe==2.0\n")
    result = app.install(pip_env)

    assert result.returncode == 0, result.stderr
    assert os.readlink(app.link) != old
    assert app.probe_version() == "2.0"
    assert Path(old).is_dir(), "the previous environment is kept for an instant rollback"


def test_only_the_current_and_previous_private_environments_are_kept(app: App, pip_env):
    for version in ("1.0", "2.0", "3.0"):
        app.require(f"vqi-probe=={version}\n")
        assert app.install(pip_env).returncode == 0

    assert app.install(pip_env).returncode == 0  # a restart re-runs Install unchanged

    assert len(envs(app.venvs)) == 2
    assert app.probe_version() == "3.0"
    app.require("vqi-probe==2.0\n")  # a rollback finds its environment ready
    assert "reusing complete environment" in app.install(pip_env).stdout


def test_shared_cache_serves_every_work_folder_and_is_never_pruned(
    app: App, pip_env, tmp_path
):
    pip_env["VQI_VENV_CACHE"] = str(tmp_path / "cache")
    other = App(app.path, tmp_path / "work-of-another-run")
    assert app.install(pip_env).returncode == 0

    reused = other.install(pip_env)

    assert "reusing complete environment" in reused.stdout
    assert os.readlink(other.link) == os.readlink(app.link)
    for version in ("2.0", "3.0"):
        app.require(f"vqi-probe=={version}\n")
        assert app.install(pip_env).returncode == 0
    assert len(envs(tmp_path / "cache")) == 3
    assert not app.venvs.exists()


def test_killed_install_never_exposes_a_half_built_environment_and_next_install_recovers(
    app: App, pip_env
):
    assert app.install(pip_env).returncode == 0
    good = os.readlink(app.link)
    app.require("vqi-probe==2.0\n")
    proc = subprocess.Popen(
        app.command(), env=pip_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        for line in proc.stdout:
            if "installing requirements with pip" in line:
                break
        assert wait_for(lambda: pip_runs_in(leftovers(app.venvs)), 30), "pip never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stdout.close()

    assert os.readlink(app.link) == good
    half_built = leftovers(app.venvs)
    assert half_built, "the killed install left its temp environment"
    assert no_process_mentions(half_built[0]), "pip must die with the installer"

    result = app.install(pip_env)

    assert result.returncode == 0, result.stderr
    assert "removing interrupted install" in result.stdout
    assert leftovers(app.venvs) == []
    assert app.probe_version() == "2.0"


def command_lines() -> list[bytes]:
    """The command line of every live process."""
    lines = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            lines.append((entry / "cmdline").read_bytes())
        except OSError:
            continue
    return lines


def wait_for(condition, timeout_s: float) -> bool:
    """True once `condition()` holds; False if `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def pip_runs_in(temp_envs: list[str]) -> bool:
    """True while a `pip install` runs from one of these half-built environments."""
    return any(
        b"-m\0pip\0install" in line and name.encode() in line
        for name in temp_envs
        for line in command_lines()
    )


def no_process_mentions(text: str, wait_s: float = 10.0) -> bool:
    """True once no live process has `text` in its command line."""
    return wait_for(lambda: not any(text.encode() in line for line in command_lines()), wait_s)


def test_concurrent_installs_of_the_same_requirements_build_once(app: App, pip_env, tmp_path):
    pip_env["VQI_VENV_CACHE"] = str(tmp_path / "cache")
    works = [tmp_path / "work-a", tmp_path / "work-b"]
    procs = [
        subprocess.Popen(
            App(app.path, work).command(), env=pip_env, stdout=subprocess.PIPE, text=True
        )
        for work in works
    ]
    outputs = [proc.communicate(timeout=240)[0] for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0]
    assert sum("-m venv" in out for out in outputs) == 1
    assert sum("reusing complete environment" in out for out in outputs) == 1
    assert os.readlink(works[0] / "venv") == os.readlink(works[1] / "venv")


def test_failed_pip_install_keeps_the_previous_environment(app: App, pip_env):
    assert app.install(pip_env).returncode == 0
    good = os.readlink(app.link)
    app.require("vqi-probe==9.9\n")

    result = app.install(pip_env)

    assert result.returncode == 5
    assert "pip install failed" in result.stderr
    assert os.readlink(app.link) == good
    assert leftovers(app.venvs) == []


def test_hashes_in_requirements_are_enforced(app: App, pip_env, wheelhouse):
    wheel = wheelhouse / "vqi_probe-1.0-py3-none-any.whl"
    good = hashlib.sha256(wheel.read_bytes()).hexdigest()
    app.require(f"vqi-probe==1.0 --hash=sha256:{'0' * 64}\n")
    assert app.install(pip_env).returncode == 5

    app.require(f"vqi-probe==1.0 \\\n    --hash=sha256:{good}\n")
    result = app.install(pip_env)

    assert result.returncode == 0, result.stderr
    assert "--require-hashes" in result.stdout


def test_component_without_requirements_gets_a_bare_environment(app: App, pip_env):
    (app.path / "requirements.txt").unlink()

    result = app.install(pip_env)

    assert result.returncode == 0, result.stderr
    assert "pip install" not in result.stdout
    assert (app.link / "bin" / "python").exists()


def test_too_old_python_fails_with_what_to_install(app: App, pip_env):
    pip_env["VQI_MIN_PYTHON"] = "3.99"

    result = app.install(pip_env)

    assert result.returncode == 3
    assert "too old" in result.stderr and "needs Python >= 3.99" in result.stderr
    assert "python3-venv" in result.stderr
    assert not app.work.exists()


def python_or_skip(minor: int) -> str:
    """CPython 3.<minor> from PATH or pyenv; the test is skipped, naming it, where it is missing."""
    python = find_python(minor)
    if python is None:
        pytest.skip(f"python3.{minor} is not installed on this machine (PATH or pyenv)")
    return python


@pytest.mark.parametrize("minor", [8, 7, 6], ids=lambda minor: f"3.{minor}")
def test_a_real_old_interpreter_gets_the_clear_message(app: App, pip_env, minor):
    result = app.install(pip_env, python=python_or_skip(minor))

    assert result.returncode == 3, result.stderr
    assert "too old: this component needs Python >= 3.9" in result.stderr


def test_python_without_venv_support_names_the_debian_package(app: App, pip_env, tmp_path):
    shadow = tmp_path / "no-ensurepip"
    (shadow / "ensurepip").mkdir(parents=True)
    (shadow / "ensurepip" / "__init__.py").write_text(
        "raise ImportError('ensurepip is not shipped without python3-venv')\n"
    )
    pip_env["PYTHONPATH"] = str(shadow)

    result = app.install(pip_env)

    assert result.returncode == 3
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert f"sudo apt-get install python{minor}-venv" in result.stderr


@pytest.mark.parametrize("minor", [9, 10, 11, 12], ids=lambda minor: f"3.{minor}")
def test_installs_with_each_supported_python(app: App, pip_env, minor):
    result = app.install(pip_env, python=python_or_skip(minor))

    assert result.returncode == 0, result.stderr
    assert app.probe_version() == "1.0"
