"""`python -m localgg` as a developer runs it: real CLI subprocess, real SDK clients, signals."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from localgg.runtime import read_env_file

from .lifecycle_fixtures import (
    kill_quietly,
    pid_alive,
    wait_for,
    write_built_component,
)

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPTS), str(REPO)]),
            "PYTHONUNBUFFERED": "1"}


class Cli:
    def __init__(self, *args: str, cwd: Path) -> None:
        self.root = cwd / "root"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localgg", *args, "--root", str(self.root),
             "--components-dir", str(cwd / "components"), "--stream-manager-port", "0"],
            cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def status(self) -> dict:
        try:
            return json.loads((self.root / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def interrupt(self, timeout: float = 30, signum: int = signal.SIGINT) -> tuple[int, str]:
        self.proc.send_signal(signum)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[callable]:
    started: list[Cli] = []

    def _start(*args: str) -> Cli:
        started.append(Cli(*args, cwd=tmp_path))
        return started[-1]

    yield _start
    for c in started:
        c.kill()


PUB_SUB_ACCESS = {
    "t.Pub": {"aws.greengrass.ipc.pubsub": {"t.Pub:pubsub:1": {
        "operations": ["aws.greengrass#PublishToTopic"], "resources": ["lgg/*"]}}},
    "t.Sub": {"aws.greengrass.ipc.pubsub": {"t.Sub:pubsub:1": {
        "operations": ["aws.greengrass#SubscribeToTopic"], "resources": ["lgg/*"]}}},
}

SUBSCRIBER = textwrap.dedent("""
    import sys, threading
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    got = threading.Event()
    def on_event(event):
        print("got", event.json_message.message["n"], flush=True)
        got.set()
    client = GreengrassCoreIPCClientV2()
    client.subscribe_to_topic(topic=sys.argv[1], on_stream_event=on_event)
    print("ready", flush=True)
    sys.exit(0 if got.wait(20) else 3)
""")
PUBLISHER = textwrap.dedent("""
    import sys
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage
    client = GreengrassCoreIPCClientV2()
    message = PublishMessage(json_message=JsonMessage(message={"n": 7}))
    client.publish_to_topic(topic=sys.argv[1], publish_message=message)
    print("published", flush=True)
""")
SM_PORT = "{aws.greengrass.StreamManager:configuration:/STREAM_MANAGER_SERVER_PORT}"
SM_CLIENT = textwrap.dedent("""
    from stream_manager import StreamManagerClient
    client = StreamManagerClient()
    print("streams", client.list_streams(), flush=True)
    client.close()
""")


def as_component(env_file: Path, code: str, *args: str, **kw) -> subprocess.Popen:
    """Run python `code` with the component identity sourced by a shell, as a developer would."""
    command = f'set -a; . "{env_file}"; set +a; exec "{sys.executable}" -c "$0" "$@"'
    return subprocess.Popen(["bash", "-c", command, code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.timeout(90)
def test_nucleus_mode_env_files_let_real_sdk_clients_act_as_components(cli, tmp_path) -> None:
    components = tmp_path / "components"
    for name, access in PUB_SUB_ACCESS.items():
        write_built_component(components, name, {
            "setEnv": {"TRICKY": "it's \"quoted\" $HOME `x` {iot:thingName}",
                       "STREAM_MANAGER_SERVER_PORT": SM_PORT},
            "Run": "exit 1"}, configuration={"accessControl": access},
            dependencies={"aws.greengrass.StreamManager": "HARD"})
    runtime = cli("nucleus", "--thing-name", "lt-9")
    assert wait_for(lambda: runtime.status().get("components"), 20), runtime.proc.stderr.read()
    env_dir = runtime.root / "env"
    pub_env = read_env_file(env_dir / "t.Pub.env")
    assert pub_env["TRICKY"] == "it's \"quoted\" $HOME `x` lt-9"
    assert pub_env["AWS_IOT_THING_NAME"] == "lt-9"
    assert Path(pub_env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"]).exists()
    assert pub_env["SVCUID"] != read_env_file(env_dir / "t.Sub.env")["SVCUID"]
    sourced = subprocess.run(["bash", "-c", f'. "{env_dir / "t.Pub.env"}"; printf %s "$TRICKY"'],
                             capture_output=True, text=True, check=True).stdout
    assert sourced == pub_env["TRICKY"]
    assert set(runtime.status()["components"]) == {"t.Pub", "t.Sub"}

    sub = as_component(env_dir / "t.Sub.env", SUBSCRIBER, "lgg/lt-9/x")
    try:
        assert sub.stdout.readline().strip() == "ready"
        pub = as_component(env_dir / "t.Pub.env", PUBLISHER, "lgg/lt-9/x")
        out, err = pub.communicate(timeout=30)
        assert pub.returncode == 0, err
        assert sub.stdout.readline().strip() == "got 7"
        assert sub.wait(timeout=10) == 0
    finally:
        sub.kill()
        sub.communicate()
    sm = as_component(env_dir / "t.Pub.env", SM_CLIENT)
    out, err = sm.communicate(timeout=30)
    assert sm.returncode == 0 and "streams" in out, err
    assert not list(runtime.root.glob("logs/t.*.log"))  # no component process was started
    code, err = runtime.interrupt()
    assert code == 0, err
    assert not Path(pub_env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"]).exists()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_every_component_process_and_exits_zero(cli, tmp_path, signum) -> None:
    components = tmp_path / "components"
    pids = tmp_path / "pids"
    write_built_component(components, "t.Base", {"Run": f"echo $$ >> {pids}; exec sleep 60"})
    write_built_component(components, "t.Worker", {
        "Run": f"sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; wait"},
        dependencies={"t.Base": "HARD"})
    runtime = cli("run")
    assert wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 3, 30), \
        runtime.proc.stderr.read() if runtime.proc.poll() is not None else "not started"
    children = [int(p) for p in pids.read_text().split()]
    try:
        assert all(pid_alive(p) for p in children)
        assert wait_for(lambda: runtime.status()["components"]["t.Worker"]["state"] == "RUNNING")
        table = subprocess.run([sys.executable, "-m", "localgg", "status", "--root",
                                str(runtime.root)], env=cli_env(), capture_output=True,
                               text=True, timeout=30).stdout
        assert [line.split()[:2] for line in table.splitlines()[1:]] == [
            ["t.Base", "RUNNING"], ["t.Worker", "RUNNING"]]
        code, err = runtime.interrupt(signum=signum)
        assert code == 0, err
        assert not any(pid_alive(p) for p in children)
        states = {n: c["state"] for n, c in runtime.status()["components"].items()}
        assert states == {"t.Base": "FINISHED", "t.Worker": "FINISHED"}
    finally:
        for pid in children:
            kill_quietly(pid)


@pytest.mark.timeout(60)
def test_bad_recipe_graph_is_a_clear_error(cli, tmp_path) -> None:
    write_built_component(tmp_path / "components", "t.A", {"Run": "true"},
                          dependencies={"t.B": "HARD"})
    write_built_component(tmp_path / "components", "t.B", {"Run": "true"},
                          dependencies={"t.A": "HARD"})
    runtime = cli("run")
    _, err = runtime.proc.communicate(timeout=30)
    assert runtime.proc.returncode == 2
    assert "localgg: error: dependency cycle: t.A -> t.B -> t.A" in err


@pytest.mark.timeout(60)
def test_malformed_overrides_file_is_a_clear_error(cli, tmp_path) -> None:
    write_built_component(tmp_path / "components", "t.A", {"Run": "true"})
    bad = tmp_path / "overrides.json"
    bad.write_text(json.dumps({"t.A": {"merge": {"X": 1}, "replace": {}}}))
    runtime = cli("run", "--config-overrides", str(bad))
    _, err = runtime.proc.communicate(timeout=30)
    assert runtime.proc.returncode == 2 and "expected {'merge'" in err


@pytest.mark.timeout(60)
def test_env_options_reach_every_component_and_the_last_one_of_a_name_wins(cli,
                                                                           tmp_path) -> None:
    seen = tmp_path / "seen"
    write_built_component(tmp_path / "components", "t.A",
                          {"Run": f'echo "A $SITE $SOURCE" >> {seen}'})
    write_built_component(tmp_path / "components", "t.B", {
        "setEnv": {"SOURCE": "recipe"}, "Run": f'echo "B $SITE $SOURCE" >> {seen}'})
    runtime = cli("run", "--env", "SITE=first", "--env", "SITE=line=2", "--env", "SOURCE=cli")
    assert wait_for(lambda: seen.exists() and len(seen.read_text().splitlines()) == 2, 30)
    # The recipe's setEnv wins over --env, as a component's own setenv wins on the nucleus.
    assert sorted(seen.read_text().splitlines()) == ["A line=2 cli", "B line=2 recipe"]
    assert read_env_file(runtime.root / "env/t.A.env")["SITE"] == "line=2"
    code, err = runtime.interrupt()
    assert code == 0, err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("option, message", [
    ("SVCUID=forged", "SVCUID is set by the runtime itself"),
    ("AWS_REGION=eu-west-1", "--thing-name and --region"),
    ("NO_VALUE", "expected NAME=VALUE"),
    ("1BAD=x", "expected NAME=VALUE"),
])
def test_env_option_that_would_replace_the_runtimes_own_or_is_malformed_is_refused(
        cli, tmp_path, option, message) -> None:
    write_built_component(tmp_path / "components", "t.A", {"Run": "true"})
    runtime = cli("run", "--env", option)
    _, err = runtime.proc.communicate(timeout=30)
    assert runtime.proc.returncode == 2 and message in err, err
    assert not (runtime.root / "env").exists()


def scratch_repo(repo: Path, pids: Path) -> Path:
    """A repo with run-local, the runtime, a stub bootstrap, no build script and one component."""
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPTS / "run-local", repo / "scripts" / "run-local")
    (repo / "scripts" / "localgg").symlink_to(SCRIPTS / "localgg")
    (repo / "scripts" / "bootstrap.sh").write_text(
        f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    write_built_component(repo / "components", "t.Svc",
                          {"Run": f"echo $$ >> {pids}; exec sleep 60"})
    return repo / "scripts" / "run-local"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs components as another user")
@pytest.mark.timeout(90)
def test_run_local_keeps_its_root_under_var_tmp_when_ggc_user_cannot_enter_the_checkout(
        tmp_path) -> None:
    home = tmp_path / "home"  # like /root, 0700
    pids = tmp_path / "pids"
    script = scratch_repo(home / "repo", pids)
    os.chmod(home, 0o700)
    proc = subprocess.Popen([str(script), "run", "--stream-manager-port", "0"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: pids.exists() and pids.read_text().strip(), 30), \
            proc.stderr.read() if proc.poll() is not None else "not started"
        digest = hashlib.sha256(str(home / "repo").encode()).hexdigest()[:8]
        root = Path("/var/tmp/vqi-local-gg") / digest
        assert json.loads((root / "status.json").read_text())["root"] == str(root)
        assert not (home / "repo" / ".local-gg").exists()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        shutil.rmtree(Path("/var/tmp/vqi-local-gg") / hashlib.sha256(
            str(home / "repo").encode()).hexdigest()[:8], ignore_errors=True)


@pytest.mark.timeout(90)
def test_run_local_script_runs_the_graph_and_stops_on_ctrl_c(tmp_path) -> None:
    """`scripts/run-local run` in a scratch repo (stub bootstrap, no build script): SIGINT stops."""
    repo = tmp_path / "repo"
    pids = tmp_path / "pids"
    script = scratch_repo(repo, pids)
    proc = subprocess.Popen([str(script), "run", "--thing-name", "rl-1"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: pids.exists() and pids.read_text().strip(), 30)
        pid = int(pids.read_text())
        status = json.loads((repo / ".local-gg" / "status.json").read_text())
        assert status["thingName"] == "rl-1"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "build-component not found" in out
        assert wait_for(lambda: not pid_alive(pid), 5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.timeout(90)
def test_processes_left_by_a_killed_runtime_are_reaped_by_the_next_one(cli, tmp_path) -> None:
    pids = tmp_path / "pids"
    write_built_component(tmp_path / "components", "t.Svc",
                          {"Run": f"echo $$ >> {pids}; exec sleep 60"})
    first = cli("run")
    assert wait_for(lambda: pids.exists() and pids.read_text().strip(), 30)
    orphan = int(pids.read_text().split()[0])
    try:
        first.kill()  # SIGKILL: no chance to stop its components
        assert pid_alive(orphan)
        second = cli("run")
        assert wait_for(lambda: not pid_alive(orphan), 30)
        assert wait_for(lambda: len(pids.read_text().split()) == 2, 30)
        code, err = second.interrupt()
        assert code == 0, err
        assert "left by an earlier runtime" in (first.root / "logs/greengrass.log").read_text()
    finally:
        for pid in pids.read_text().split():
            kill_quietly(int(pid))
