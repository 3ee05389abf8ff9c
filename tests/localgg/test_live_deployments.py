"""A running runtime takes deployments as the nucleus does: new versions reinstalled, dependents
restarted, and everything rolled back when a component ends BROKEN (ROLLBACK)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from localgg.runtime import LocalRuntime, RuntimeOptions
from localgg.supervisor import RestartPolicy

from .lifecycle_fixtures import wait_for, write_built_component

A, B = "t.Model", "t.Inspector"
REPO = Path(__file__).resolve().parents[2]
# B starts only when A's artifact says "good" (Startup exits 0: RUNNING; else ERRORED): a Run
# step would be RUNNING as soon as it started, and the deployment would not wait for it to fail.
B_LIFECYCLE = {"Startup": {"Script": 'v=$(cat {t.Model:artifacts:path}/v.txt); '
                                     'echo "$v" > seen.txt; echo x >> starts.txt; '
                                     'echo {t.Model:artifacts:path} > path.txt; '
                                     'test "$v" = good'}}


def write_a(components_dir: Path, version: str, content: str) -> None:
    write_built_component(components_dir, A, {"Install": "cat {artifacts:path}/v.txt"},
                          version=version, files={"v.txt": content})


@pytest.fixture
def line(tmp_path: Path):
    write_a(tmp_path / "components", "1.0.0", "good")
    write_built_component(tmp_path / "components", B, B_LIFECYCLE, dependencies={A: "HARD"},
                          configuration={"Threshold": 1})
    runtime = LocalRuntime(RuntimeOptions(root=tmp_path / "root",
                                          components_dir=tmp_path / "components",
                                          stream_manager_port=0,
                                          policy=RestartPolicy(max_errors=3)))
    runtime.start(run_components=True)
    assert runtime.wait_settled(30) == {A: "FINISHED", B: "RUNNING"}
    yield runtime
    runtime.stop()


def document(model_version: str, policy: str = "ROLLBACK", b_update: dict | None = None) -> dict:
    components = {A: {"componentVersion": model_version},
                  B: {"componentVersion": "1.0.0"}}
    if b_update is not None:
        components[B]["configurationUpdate"] = b_update
    return {"components": components,
            "deploymentPolicies": {"failureHandlingPolicy": policy}}


def seen(runtime: LocalRuntime) -> str:
    return (runtime.root / "work" / B / "seen.txt").read_text().strip()


def starts(runtime: LocalRuntime) -> int:
    return len((runtime.root / "work" / B / "starts.txt").read_text().split())


def test_a_new_version_is_installed_and_its_dependent_restarted(line: LocalRuntime,
                                                                tmp_path: Path) -> None:
    write_a(tmp_path / "new", "1.1.0", "good")
    record = line.deploy(document("1.1.0"), tmp_path / "new")
    assert (record["status"], record["detailedStatus"]) == ("SUCCEEDED", "SUCCESSFUL")
    status = json.loads((line.root / "status.json").read_text())["components"]
    assert status[A]["version"] == "1.1.0" and status[B]["state"] == "RUNNING"
    assert (line.root / "work" / B / "path.txt").read_text().strip().endswith(f"{A}/1.1.0")
    assert starts(line) == 2
    saved = json.loads((line.root / "deployments" / f"{record['deploymentId']}.json").read_text())
    assert saved["detailedStatus"] == "SUCCESSFUL" and saved["components"][A] == "1.1.0"


def test_a_dependent_that_ends_broken_rolls_every_component_back(line: LocalRuntime,
                                                                 tmp_path: Path) -> None:
    write_a(tmp_path / "new", "2.0.0", "bad")
    record = line.deploy(document("2.0.0", b_update={"merge": {"Threshold": 5}}), tmp_path / "new")
    assert (record["status"], record["detailedStatus"]) == ("FAILED", "FAILED_ROLLBACK_COMPLETE")
    assert f"Service {B} in broken state" in record["failureCause"]
    assert [r.version for r in line.recipes] == ["1.0.0", "1.0.0"]
    assert line.wait_settled(30) == {A: "FINISHED", B: "RUNNING"}
    assert seen(line) == "good" and starts(line) == 1 + 3 + 1  # 3 failed starts, then 1.0.0
    assert line.ipc.get_configuration(B)["Threshold"] == 1  # the configuration came back too
    held = json.loads((line.root / "config" / "config.json").read_text())
    assert held[B]["Threshold"] == 1


def test_do_nothing_leaves_the_failed_versions_in_place(line: LocalRuntime,
                                                        tmp_path: Path) -> None:
    write_a(tmp_path / "new", "2.0.0", "bad")
    record = line.deploy(document("2.0.0", policy="DO_NOTHING"), tmp_path / "new")
    assert record["detailedStatus"] == "FAILED_ROLLBACK_NOT_REQUESTED"
    assert line.supervisor.status(B).state.value == "BROKEN"
    assert {r.name: r.version for r in line.recipes}[A] == "2.0.0"


def test_a_configuration_change_reaches_the_component_without_a_restart(
        line: LocalRuntime) -> None:
    record = line.deploy(document("1.0.0", b_update={"merge": {"Threshold": 2}}))
    assert record["detailedStatus"] == "SUCCESSFUL"
    assert line.ipc.get_configuration(B)["Threshold"] == 2
    assert starts(line) == 1


def test_a_later_deployment_repairs_a_broken_component(line: LocalRuntime,
                                                       tmp_path: Path) -> None:
    write_a(tmp_path / "new", "2.0.0", "bad")
    line.deploy(document("2.0.0", policy="DO_NOTHING"), tmp_path / "new")
    record = line.deploy(document("1.0.0"))
    assert record["detailedStatus"] == "SUCCESSFUL"
    assert line.supervisor.status(B).state.value == "RUNNING" and seen(line) == "good"


@pytest.mark.parametrize(("doc", "detailed", "words"), [
    (document("1.0.0", policy="rollback"), "REJECTED", "failureHandlingPolicy must be one of"),
    ({"components": {A: {"componentVersion": "1.0.0"}}}, "REJECTED", "removal is not emulated"),
    (document("9.9.9"), "FAILED_NO_STATE_CHANGE", "t.Model 9.9.9: not the running version"),
    (document("1.0.0", b_update={"reset": "Threshold"}), "REJECTED", "must be a list"),
])
def test_a_document_that_cannot_be_applied_changes_nothing(line: LocalRuntime, doc: dict,
                                                           detailed: str, words: str) -> None:
    record = line.deploy(doc)
    assert record["detailedStatus"] == detailed and words in record["failureCause"]
    assert starts(line) == 1 and [r.version for r in line.recipes] == ["1.0.0", "1.0.0"]


def test_deploy_command_follows_the_deployment_of_a_running_runtime(tmp_path: Path) -> None:
    write_a(tmp_path / "components", "1.0.0", "good")
    write_built_component(tmp_path / "components", B, B_LIFECYCLE, dependencies={A: "HARD"})
    write_a(tmp_path / "new", "2.0.0", "bad")
    (tmp_path / "bad.json").write_text(json.dumps(document("2.0.0")))
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    root = tmp_path / "root"
    runtime = subprocess.Popen([sys.executable, "-m", "localgg", "run", "--root", str(root),
                                "--components-dir", str(tmp_path / "components"),
                                "--stream-manager-port", "0"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (root / "status.json").is_file() and json.loads(
            (root / "status.json").read_text())["components"][B]["state"] == "RUNNING", 60)
        done = subprocess.run([sys.executable, "-m", "localgg", "deploy", "--root", str(root),
                               "--components-dir", str(tmp_path / "new"),
                               str(tmp_path / "bad.json")],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        assert done.stdout.strip().splitlines()[-1] == "FAILED FAILED_ROLLBACK_COMPLETE"
        assert "rolling back" in done.stdout
    finally:
        runtime.send_signal(signal.SIGTERM)
        runtime.wait(60)
    again = subprocess.run([sys.executable, "-m", "localgg", "deploy", "--root", str(root),
                            str(tmp_path / "bad.json")], env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 2 and "no runtime is running" in again.stderr


def test_a_repaired_component_starts_with_its_error_count_cleared(line: LocalRuntime,
                                                                 tmp_path: Path) -> None:
    write_a(tmp_path / "new", "2.0.0", "bad")
    line.deploy(document("2.0.0", policy="DO_NOTHING"), tmp_path / "new")
    assert line.supervisor.status(B).errors == 3
    line.deploy(document("1.0.0"))  # Lifecycle.handleCurrentStateBroken clears the count
    assert line.supervisor.status(B).errors == 0


def test_a_dependent_blocked_by_a_broken_dependency_starts_once_it_is_repaired(
        tmp_path: Path) -> None:
    # A's Install fails until its configuration says otherwise: at start A ends BROKEN and B,
    # which needs A (HARD), is left INSTALLED. A deployment that only fixes A's configuration
    # reinstalls A; B's own spec is unchanged, yet it must start and the deployment end.
    write_built_component(tmp_path / "components", A,
                          {"Install": 'test "{configuration:/Broken}" = no'},
                          configuration={"Broken": "yes"})
    write_built_component(tmp_path / "components", B, {"Run": "exec sleep 600"},
                          dependencies={A: "HARD"})
    with LocalRuntime(RuntimeOptions(root=tmp_path / "root",
                                     components_dir=tmp_path / "components",
                                     stream_manager_port=0)) as runtime:
        runtime.start(run_components=True)
        assert runtime.wait_settled(30) == {A: "BROKEN", B: "INSTALLED"}
        record = runtime.deploy({"components": {
            A: {"componentVersion": "1.0.0", "configurationUpdate": {"merge": {"Broken": "no"}}},
            B: {"componentVersion": "1.0.0"}}})
        assert record["detailedStatus"] == "SUCCESSFUL"
        assert runtime.wait_settled(30) == {A: "FINISHED", B: "RUNNING"}


def test_an_access_control_the_nucleus_would_refuse_changes_nothing(line: LocalRuntime) -> None:
    bad = {"merge": {"accessControl": {"aws.greengrass.ipc.pubsub": "not a mapping"}}}
    record = line.deploy(document("1.0.0", b_update=bad))
    assert record["detailedStatus"] == "FAILED_NO_STATE_CHANGE"
    assert starts(line) == 1
