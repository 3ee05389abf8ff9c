"""Offline artifacts: vqitools.wheels bundles the pins; envinstall installs them with --no-index."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from vqitools.build import BuildError
from vqitools.wheels import BundleError, bundle_wheels, bundler_for_build, parse_requirements

from .installkit import App

pytestmark = pytest.mark.timeout(300)
HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_28_aarch64"]
PYTHONS = ["3.9", "3.10", "3.11", "3.12"]


def bundle(app: App, platforms=PLATFORMS, pythons=PYTHONS) -> dict:
    return bundle_wheels(app.path / "requirements.txt", app.path / "wheels", platforms, pythons,
                         log=lambda line: None)


def test_pure_python_pins_cover_every_target_with_one_copy_of_each_wheel(app: App, pip_env):
    manifest = bundle(app)

    assert [(t["machine"], t["python"], t["complete"]) for t in manifest["targets"]] == [
        (arch, python, True) for arch in ("x86_64", "aarch64") for python in PYTHONS
    ]
    assert manifest["missing"] == []
    assert sorted(p.name for p in (app.path / "wheels").glob("*.whl")) == [
        "vqi_probe-1.0-py3-none-any.whl"
    ]


def test_each_target_without_a_wheel_for_a_pin_is_reported_by_name(app: App, pip_env):
    app.require("vqi-probe==1.0\nvqi-native==1.0\n")

    manifest = bundle(app)

    complete = [(t["machine"], t["python"]) for t in manifest["targets"] if t["complete"]]
    assert complete == [("x86_64", "3.11")]
    assert "cp312-manylinux_2_28_aarch64: no wheel for vqi-native==1.0" in manifest["missing"]
    assert len(manifest["missing"]) == 7
    x86_311 = next(t for t in manifest["targets"] if t["complete"])
    assert x86_311["glibc"] == "2.17"


def test_bundling_twice_gives_a_byte_identical_manifest(app: App, pip_env, tmp_path):
    bundle(app)
    first = (app.path / "wheels" / "manifest.json").read_bytes()
    shutil.rmtree(app.path / "wheels")

    bundle(app)

    assert (app.path / "wheels" / "manifest.json").read_bytes() == first


def test_a_dependency_left_unpinned_is_reported_at_build_time(app: App, pip_env):
    app.require("vqi-needy==1.0\n")

    manifest = bundle(app, platforms=PLATFORMS[:1], pythons=[HERE])

    assert manifest["targets"][0]["complete"] is False
    assert "is not pinned" in manifest["missing"][0] and "vqi-dep" in manifest["missing"][0]


def test_markers_are_evaluated_for_each_target_python(app: App, pip_env):
    app.require(
        'vqi-probe==1.0 ; python_version < "3.10"\n'
        'vqi-probe==2.0 ; python_version >= "3.10"\n'
    )

    manifest = bundle(app, platforms=PLATFORMS[:1], pythons=["3.9", "3.12"])

    files = {t["python"]: t["files"] for t in manifest["targets"]}
    assert files == {
        "3.9": ["vqi_probe-1.0-py3-none-any.whl"],
        "3.12": ["vqi_probe-2.0-py3-none-any.whl"],
    }


def test_requirements_that_are_not_exact_pins_are_refused():
    with pytest.raises(BundleError, match="not an exact == pin"):
        parse_requirements("vqi-probe>=1.0\n")


def test_build_bundler_takes_its_targets_from_the_environment(app: App, pip_env, monkeypatch):
    monkeypatch.setenv("VQI_BUNDLE_PLATFORMS", "manylinux_2_28_aarch64")
    monkeypatch.setenv("VQI_BUNDLE_PYTHONS", "3.10,3.12")

    bundler_for_build()(app.path / "requirements.txt", app.path / "wheels")

    manifest = json.loads((app.path / "wheels" / "manifest.json").read_text())
    assert [(t["machine"], t["python"]) for t in manifest["targets"]] == [
        ("aarch64", "3.10"), ("aarch64", "3.12")
    ]


def test_strict_build_fails_on_any_target_without_wheels(app: App, pip_env, monkeypatch):
    app.require("vqi-native==1.0\n")
    monkeypatch.setenv("VQI_BUNDLE_PLATFORMS", "manylinux_2_28_x86_64")
    monkeypatch.setenv("VQI_BUNDLE_PYTHONS", "3.11,3.12")
    bundler_for_build()(app.path / "requirements.txt", app.path / "wheels")  # 3.11 is complete

    monkeypatch.setenv("VQI_BUNDLE_STRICT", "1")
    with pytest.raises(BuildError, match="some targets lack wheels"):
        bundler_for_build()(app.path / "requirements.txt", app.path / "wheels")


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if ".tmp-" in p.name] if root.exists() else []


def offline_env(pip_env: dict) -> dict:
    """pip settings that would fail any index access: only the bundle can satisfy the install."""
    env = {k: v for k, v in pip_env.items() if not k.startswith("PIP_")}
    env["PIP_INDEX_URL"] = "http://127.0.0.1:9/simple"
    return env


def test_bundled_app_installs_with_no_index_and_ignores_device_pip_settings(app: App, pip_env):
    bundle(app)

    result = app.install(offline_env(pip_env))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "--no-index --find-links" in result.stdout
    assert json.loads((app.link / ".complete").read_text())["bundled_wheels"] is True
    assert app.probe_version() == "1.0"


def test_bundled_app_with_a_missing_wheel_fails_naming_it(app: App, pip_env):
    bundle(app)
    (app.path / "wheels" / "vqi_probe-1.0-py3-none-any.whl").unlink()

    result = app.install(offline_env(pip_env))

    assert result.returncode == 4
    assert "bundled wheel missing" in result.stderr and "vqi_probe-1.0" in result.stderr
    assert not os.path.lexists(app.link)


def test_bundled_app_with_a_corrupt_wheel_fails_before_pip_runs(app: App, pip_env):
    bundle(app)
    wheel = app.path / "wheels" / "vqi_probe-1.0-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes() + b"tampered")

    result = app.install(offline_env(pip_env))

    assert result.returncode == 4
    assert "sha256 mismatch" in result.stderr and "pip install" not in result.stdout
    assert leftovers(app.venvs) == []


def test_bundle_without_this_python_fails_saying_what_it_covers(app: App, pip_env):
    other = "3.9" if HERE != "3.9" else "3.10"
    bundle(app, pythons=[other])

    result = app.install(offline_env(pip_env))

    assert result.returncode == 4
    assert f"do not cover CPython {HERE}" in result.stderr
    assert f"CPython {other} x86_64" in result.stderr


def test_bundle_built_for_other_requirements_is_refused(app: App, pip_env):
    bundle(app)
    app.require("vqi-probe==2.0\n")

    result = app.install(offline_env(pip_env))

    assert result.returncode == 4
    assert "built for another requirements.txt" in result.stderr


def test_bundle_is_part_of_the_environment_key(app: App, pip_env):
    assert app.install(pip_env).returncode == 0
    from_index = os.readlink(app.link)
    bundle(app)

    assert app.install(offline_env(pip_env)).returncode == 0

    assert os.readlink(app.link) != from_index
    assert Path(from_index).is_dir()
