"""Where ./scripts/run-local keeps its runtime root by default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vqitools import demo


def test_the_root_is_in_the_checkout_when_component_users_can_reach_it(tmp_path, monkeypatch):
    checkout = tmp_path / "repo"
    checkout.mkdir()
    monkeypatch.setattr(demo, "REPO_ROOT", checkout)
    if os.geteuid() == 0 and not all(p.stat().st_mode & 0o001 for p in checkout.parents):
        pytest.skip("this test's base folder is private")
    assert demo.default_root() == checkout / ".local-gg"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs components as another user")
def test_a_checkout_ggc_user_cannot_enter_gets_a_root_under_var_tmp(tmp_path, monkeypatch):
    private = tmp_path / "home"
    (private / "repo").mkdir(parents=True)
    os.chmod(private, 0o700)  # like /root
    monkeypatch.setattr(demo, "REPO_ROOT", private / "repo")
    root = demo.default_root()
    assert root.parent == Path("/var/tmp/vqi-local-gg")
    assert root == demo.default_root()  # stable for one checkout
