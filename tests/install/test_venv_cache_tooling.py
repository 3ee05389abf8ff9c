"""The local tooling's VQI_VENV_CACHE (vqitools.venvcache): what the demo, the graph runner and
run-local hand the local runtime as extra environment, so Install steps share environments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from localgg.users import is_root
from vqitools import venvcache

REPO = Path(__file__).resolve().parents[2]


def test_the_callers_cache_is_used_and_given_to_the_component_user(tmp_path, monkeypatch):
    cache = tmp_path / "shared" / "venvs"
    monkeypatch.setenv("VQI_VENV_CACHE", str(cache))
    assert venvcache.runtime_env() == {"VQI_VENV_CACHE": str(cache)}
    assert cache.is_dir()
    user = venvcache.component_user()
    assert cache.stat().st_uid == (user.uid if user else os.geteuid())
    if is_root():  # as the runtime does: ggc_user unless the deployment says otherwise
        assert user is not None and user.user == "ggc_user"


def test_the_deployments_posix_user_decides_whose_cache_it_is():
    merge = {"runWithDefault": {"posixUser": "someone:somegroup"}}
    assert venvcache.posix_user({"aws.greengrass.Nucleus": {"merge": merge}}) == \
        "someone:somegroup"
    assert venvcache.posix_user({"aws.greengrass.Nucleus": {"merge": '{"x": 1}'}}) == \
        "ggc_user:ggc_group"
    assert venvcache.posix_user(None) == "ggc_user:ggc_group"


@pytest.mark.timeout(60)
def test_the_command_prints_an_assignment_for_the_runtimes_env_option(tmp_path):
    cache = tmp_path / "cli-cache"
    env = dict(os.environ, VQI_VENV_CACHE=str(cache),
               PYTHONPATH=os.pathsep.join([str(REPO / "scripts"), str(REPO)]))
    done = subprocess.run([sys.executable, "-m", "vqitools.venvcache"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"VQI_VENV_CACHE={cache}\n" and cache.is_dir()
