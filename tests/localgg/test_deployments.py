"""Each start of the runtime is a deployment onto what the device holds, as on the nucleus."""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from localgg.runtime import LocalRuntime, RuntimeOptions, read_env_file
from localgg.supervisor import State

from .lifecycle_fixtures import SDK_PYTHON, wait_for, write_built_component

THING = "line-7"
IOT_POLICY = {"aws.greengrass.ipc.mqttproxy": {"t.Pub:mqttproxy:1": {
    "operations": ["aws.greengrass#PublishToIoTCore"],
    "resources": ["vqi/{iot:thingName}/results"]}}}
PUBLISH = ("from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2 as C\n"
           "import sys\n"
           "try:\n"
           f"    C().publish_to_iot_core(topic_name='vqi/{THING}/results', qos='1', payload=b'1')\n"
           "except Exception as exc:\n"
           "    print(type(exc).__name__); sys.exit(1)\n"
           "print('published')\n")


def deploy(tmp_path: Path, overrides: dict | None = None, run: bool = False,
           **options) -> LocalRuntime:
    runtime = LocalRuntime(RuntimeOptions(root=tmp_path / "root",
                                          components_dir=tmp_path / "components",
                                          thing_name=THING, overrides=overrides or {},
                                          stream_manager_port=options.pop("sm_port", 0),
                                          **options))
    runtime.start(run_components=run)
    return runtime


def config_of(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / "root/config/config.json").read_text())[name]


def publish_as(runtime: LocalRuntime, name: str) -> str:
    env = read_env_file(runtime.root / "env" / f"{name}.env")
    done = subprocess.run([SDK_PYTHON, "-c", PUBLISH], env=env, capture_output=True, text=True,
                          timeout=60)
    return done.stdout.strip() or done.stderr


def test_a_key_removed_from_the_deployment_keeps_its_deployed_value(tmp_path: Path) -> None:
    write_built_component(tmp_path / "components", "t.Cfg", configuration={"A": "a0", "B": 1})
    deploy(tmp_path, {"t.Cfg": {"merge": {"A": "site"}}}).stop()
    runtime = deploy(tmp_path)  # the next site file no longer names A
    try:
        assert runtime.ipc.get_configuration("t.Cfg") == {"A": "site", "B": 1}
    finally:
        runtime.stop()
    assert config_of(tmp_path, "t.Cfg") == {"A": "site", "B": 1}


def test_reset_of_the_whole_document_restores_the_recipe_defaults(tmp_path: Path) -> None:
    write_built_component(tmp_path / "components", "t.Cfg", configuration={"A": "a0", "B": 1})
    deploy(tmp_path, {"t.Cfg": {"merge": {"A": "site", "Extra": True}}}).stop()
    runtime = deploy(tmp_path, {"t.Cfg": {"reset": [""], "merge": {"B": 2}}})
    try:
        assert runtime.ipc.get_configuration("t.Cfg") == {"A": "a0", "B": 2}
    finally:
        runtime.stop()


def test_new_recipe_defaults_fill_only_keys_the_device_lacks(tmp_path: Path) -> None:
    components = tmp_path / "components"
    write_built_component(components, "t.Cfg", configuration={"A": "a0"})
    deploy(tmp_path, {"t.Cfg": {"merge": {"A": "site"}}}).stop()
    write_built_component(components, "t.Cfg", configuration={"A": "a1", "New": "n"})
    runtime = deploy(tmp_path)
    try:
        assert runtime.ipc.get_configuration("t.Cfg") == {"A": "site", "New": "n"}
    finally:
        runtime.stop()


def test_configuration_a_component_updates_over_ipc_persists(tmp_path: Path) -> None:
    write_built_component(tmp_path / "components", "t.Cfg", configuration={"A": "a0"})
    runtime = deploy(tmp_path)
    runtime.ipc.update_configuration("t.Cfg", ["A"], "from-ipc")
    runtime.stop()
    assert config_of(tmp_path, "t.Cfg")["A"] == "from-ipc"


@pytest.mark.timeout(90)
def test_thing_name_in_access_control_is_refused_on_a_default_nucleus(tmp_path: Path) -> None:
    write_built_component(tmp_path / "components", "t.Pub",
                          configuration={"accessControl": IOT_POLICY})
    runtime = deploy(tmp_path)
    try:
        assert publish_as(runtime, "t.Pub") == "UnauthorizedError"
        policy = runtime.ipc.get_configuration("t.Pub")["accessControl"]
        assert "vqi/{iot:thingName}/results" in json.dumps(policy)  # left as written
    finally:
        runtime.stop()


@pytest.mark.timeout(90)
def test_thing_name_in_access_control_works_with_interpolation_enabled(tmp_path: Path) -> None:
    write_built_component(tmp_path / "components", "t.Pub",
                          configuration={"accessControl": IOT_POLICY, "Topic": "{iot:thingName}",
                                         "Ref": "{configuration:/Topic}"})
    nucleus = {"aws.greengrass.Nucleus": {"merge": {"interpolateComponentConfiguration": True}}}
    runtime = deploy(tmp_path, nucleus)
    try:
        assert publish_as(runtime, "t.Pub") == "published"
        config = runtime.ipc.get_configuration("t.Pub")
        # System parameters only, as KernelConfigResolver.interpolateSystemParametersOnly.
        assert (config["Topic"], config["Ref"]) == (THING, "{configuration:/Topic}")
    finally:
        runtime.stop()
    assert config_of(tmp_path, "aws.greengrass.Nucleus")["interpolateComponentConfiguration"]


@pytest.mark.timeout(90)
def test_stream_manager_port_reaches_a_component_only_through_its_configuration(
        tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    write_built_component(tmp_path / "components", "t.Sm", {
        "setEnv": {"STREAM_MANAGER_SERVER_PORT":
                   "{aws.greengrass.StreamManager:configuration:/STREAM_MANAGER_SERVER_PORT}"},
        "Run": f"env > {out}"}, dependencies={"aws.greengrass.StreamManager": "HARD"})
    write_built_component(tmp_path / "components", "t.Plain", {"Run": "true"})
    sm = {"aws.greengrass.StreamManager": {"merge": {"STREAM_MANAGER_SERVER_PORT": "0"}}}
    runtime = deploy(tmp_path, sm, sm_port=None)
    try:
        port = runtime.stream_manager.port
        assert port not in (0, 8088)
        assert read_env_file(runtime.root / "env/t.Sm.env")["STREAM_MANAGER_SERVER_PORT"] == \
            str(port)
        assert "STREAM_MANAGER_SERVER_PORT" not in read_env_file(runtime.root / "env/t.Plain.env")
    finally:
        runtime.stop()
    held = config_of(tmp_path, "aws.greengrass.StreamManager")
    assert held["STREAM_MANAGER_SERVER_PORT"] == str(port)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
@pytest.mark.timeout(90)
def test_as_root_components_run_as_ggc_user_in_a_0700_work_folder(tmp_path: Path) -> None:
    ids = tmp_path / "ids"
    write_built_component(tmp_path / "components", "t.Who", {
        "Run": f"id -u > {ids}; id -g >> {ids}; echo $HOME >> {ids}; echo $PATH >> {ids}; "
               "exec sleep 30"}, files={"data.bin": b"x"})
    runtime = deploy(tmp_path, run=True)
    try:
        assert runtime.supervisor.wait_until(lambda s: s["t.Who"].state == State.RUNNING, 30)
        assert wait_for(lambda: ids.exists() and len(ids.read_text().split()) == 4)
        uid, gid, home, path = ids.read_text().split()
        user = pwd.getpwnam("ggc_user")
        assert int(uid) == user.pw_uid != 0 and home == user.pw_dir
        assert path == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        work = runtime.root / "work/t.Who"
        info = work.stat()
        assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == user.pw_uid
        artifact = runtime.root / "packages/artifacts/t.Who/1.0.0/data.bin"
        assert stat.S_IMODE(artifact.stat().st_mode) == 0o440
        assert artifact.stat().st_uid == user.pw_uid and int(gid) == artifact.stat().st_gid
        proc_uid = Path(f"/proc/{runtime.supervisor.status('t.Who').pid}/status").read_text()
        assert f"Uid:\t{user.pw_uid}" in proc_uid
    finally:
        runtime.stop()


@pytest.mark.timeout(90)
def test_stream_manager_accepts_each_components_svcuid_and_nothing_else(tmp_path: Path) -> None:
    for name in ("t.A", "t.B"):
        write_built_component(tmp_path / "components", name, {
            "setEnv": {"STREAM_MANAGER_SERVER_PORT":
                       "{aws.greengrass.StreamManager:configuration:/STREAM_MANAGER_SERVER_PORT}"}},
            dependencies={"aws.greengrass.StreamManager": "HARD"})
    code = ("from stream_manager import StreamManagerClient\n"
            "try:\n"
            "    StreamManagerClient().list_streams(); print('ok')\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__)\n")
    runtime = deploy(tmp_path)
    try:
        for name in ("t.A", "t.B"):
            env = read_env_file(runtime.root / "env" / f"{name}.env")
            assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == env["SVCUID"]
            done = subprocess.run([SDK_PYTHON, "-c", code], env=env, capture_output=True,
                                  text=True, timeout=60)
            assert done.stdout.strip() == "ok", done.stderr
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "not-a-component"
        done = subprocess.run([SDK_PYTHON, "-c", code], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.stdout.strip() != "ok"
    finally:
        runtime.stop()
