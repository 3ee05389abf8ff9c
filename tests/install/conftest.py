"""Fixtures for install tests: real pip and real venvs in temp dirs, no network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .installkit import App, make_wheel


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """A local 'index': pure vqi-probe 1.0/2.0/3.0, vqi-dep, vqi-needy (needs vqi-dep) and
    vqi-native, whose only wheel is for CPython 3.11 on x86_64."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    for version in ("1.0", "2.0", "3.0"):
        make_wheel(folder, "vqi-probe", version)
    make_wheel(folder, "vqi-dep", "1.0")
    make_wheel(folder, "vqi-native", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    make_wheel(folder, "vqi-needy", "1.0", requires=("vqi-dep>=1.0",))
    return folder


@pytest.fixture
def pip_env(wheelhouse, monkeypatch) -> dict:
    """Environment in which pip sees only the wheelhouse (the test's stand-in for an index)."""
    for name in list(os.environ):
        if name.startswith("PIP_") or name == "VQI_VENV_CACHE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse))
    return dict(os.environ)


@pytest.fixture
def app(tmp_path) -> App:
    folder = tmp_path / "artifacts" / "vqi_probe_app"
    folder.mkdir(parents=True)
    app = App(folder, tmp_path / "work")
    app.require("vqi-probe==1.0\n")
    return app
