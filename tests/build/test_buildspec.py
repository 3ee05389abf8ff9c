"""buildspec.yml is a valid CodeBuild 0.2 spec whose commands exist in this repository."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((REPO / "buildspec.yml").read_text())


def commands(phase: str) -> list:
    return SPEC["phases"][phase]["commands"]


def test_is_a_codebuild_0_2_spec_with_every_phase():
    assert str(SPEC["version"]) == "0.2"
    assert set(SPEC["phases"]) == {"install", "pre_build", "build", "post_build"}


def test_install_pins_the_gdk_cli_tag_and_sets_up_the_project():
    text = " ".join(commands("install"))
    tag = SPEC["env"]["variables"]["GDK_CLI_REF"]
    assert tag == "v" + json.loads((REPO / "gdk-config.json").read_text())["gdk_version"]
    assert "aws-greengrass-gdk-cli.git@${GDK_CLI_REF}" in text
    assert "./scripts/bootstrap.sh" in text


def test_pre_build_runs_the_readme_test_command():
    assert commands("pre_build") == ["./scripts/test"]
    assert "./scripts/test" in (REPO / "README.md").read_text()


def test_every_repo_script_it_runs_exists_and_is_executable():
    scripts = set()
    for phase in SPEC["phases"].values():
        for command in phase["commands"]:
            scripts.update(re.findall(r"\./(scripts/[\w.-]+)", command))
    assert scripts >= {"scripts/bootstrap.sh", "scripts/test", "scripts/ci-publish"}
    for script in scripts:
        mode = os.stat(REPO / script).st_mode
        assert mode & stat.S_IXUSR, f"{script} is not executable"


def test_build_compares_the_webhook_previous_commit_with_the_resolved_source():
    text = " ".join(commands("build"))
    assert "CODEBUILD_WEBHOOK_PREV_COMMIT" in text and "CODEBUILD_RESOLVED_SOURCE_VERSION" in text


def test_report_is_a_build_artifact():
    post = " ".join(commands("post_build"))
    report = re.search(r"--report (\S+)", post).group(1)
    assert report in SPEC["artifacts"]["files"]


def test_ci_publish_runs_gdk_build_then_publish_in_each_changed_folder(tmp_path):
    """With a stand-in `gdk` on PATH that records its calls, the real script's order shows."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "gdk"
    fake.write_text(f'#!/bin/sh\necho "$(pwd) $*" >> {log}\n')
    fake.chmod(0o755)
    results = tmp_path / "results.jsonl"
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    proc = subprocess.run(
        [str(REPO / "scripts/ci-publish"), "--base", "", "--results", str(results)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    folders = sorted(p.name for p in (REPO / "components").iterdir() if p.is_dir())
    assert len(calls) == 2 * len(folders)
    for i, folder in enumerate(folders):
        assert calls[2 * i] == f"{REPO}/components/{folder} component build"
        assert calls[2 * i + 1] == f"{REPO}/components/{folder} component publish"
    report = tmp_path / "report.json"
    subprocess.run([str(REPO / "scripts/ci-publish"), "--report", str(report), "--results",
                    str(results)], check=True, capture_output=True)
    assert len(json.loads(report.read_text())["published"]) == len(folders)


def test_ci_publish_fails_when_any_component_fails_but_tries_them_all(tmp_path):
    fake = tmp_path / "gdk"
    fake.write_text('#!/bin/sh\ncase "$(pwd)" in *inference) exit 3;; esac\nexit 0\n')
    fake.chmod(0o755)
    results = tmp_path / "results.jsonl"
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    proc = subprocess.run(
        [str(REPO / "scripts/ci-publish"), "--base", "", "--results", str(results)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert {r["folder"].split("/")[-1]: r["status"] for r in records} == {
        "dashboard": "published", "image-source": "published", "inference": "failed",
        "model": "published", "uploader": "published"}


def test_the_publish_build_installs_no_model_toolchain():
    assert SPEC["env"]["variables"]["VQI_TOOLCHAIN"] == "0"
    dev = (REPO / "requirements-dev.txt").read_text()
    assert not re.search(r"^(torch|torchvision|ultralytics)\b", dev, re.M)
    toolchain = (REPO / "requirements-toolchain.txt").read_text()
    assert re.search(r"^torch==", toolchain, re.M) and re.search(r"^ultralytics==", toolchain, re.M)


def test_without_the_toolchain_its_tests_are_deselected_and_counted():
    env = dict(os.environ, VQI_TOOLCHAIN="0")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/inference/test_letterbox.py", "tests/inference/test_model.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120).stdout
    assert "test_padding_uses_the_pad_value" in out  # no toolchain needed: still collected
    assert "test_unset_model_dir" in out
    assert "ultralytics" not in out  # marked: the parity tests against ultralytics
    assert "test_good_model_loads_with_its_signature" not in out  # uses dev_model_dir
    assert re.search(r"\d+/\d+ tests collected \(\d+ deselected\)", out), out
