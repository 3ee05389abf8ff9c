"""The lifecycle runner runs built components as the nucleus would (real `sh -c` subprocesses)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localgg.runtime import LocalRuntime, RootBusyError, RuntimeOptions
from localgg.supervisor import RestartPolicy, State

from .lifecycle_fixtures import (
    AS_RUNTIME_USER,
    PYTHON,
    SDK_PYTHON,
    kill_quietly,
    pid_alive,
    wait_for,
    write_built_component,
)

FAST = RestartPolicy(backoff_initial_s=0.2, backoff_factor=2.0, stop_grace_s=1.0)
SETTLED = {State.RUNNING, State.FINISHED, State.BROKEN}


@pytest.fixture
def components(tmp_path: Path) -> Path:
    return tmp_path / "components"


@pytest.fixture
def start(tmp_path: Path, components: Path) -> Iterator[Callable[..., LocalRuntime]]:
    started: list[LocalRuntime] = []

    def _start(policy: RestartPolicy = FAST, **options) -> LocalRuntime:
        runtime = LocalRuntime(RuntimeOptions(root=tmp_path / "root", components_dir=components,
                                              policy=policy, **options))
        started.append(runtime)
        runtime.start()
        return runtime

    yield _start
    for runtime in started:
        runtime.stop()


def state(runtime: LocalRuntime, name: str) -> State:
    assert runtime.supervisor is not None
    return runtime.supervisor.status(name).state


def wait_state(runtime: LocalRuntime, name: str, wanted: State, timeout: float = 15) -> None:
    assert runtime.supervisor is not None
    ok = runtime.supervisor.wait_until(lambda s: s[name].state == wanted, timeout)
    assert ok, f"{name} is {state(runtime, name)}, wanted {wanted}"


def mark(trace: Path, text: str) -> str:
    return f"echo {text} >> {trace}"


@pytest.mark.timeout(60)
def test_install_first_then_run_after_dependencies_are_running(start, components,
                                                              tmp_path) -> None:
    trace = tmp_path / "trace.txt"
    write_built_component(components, "t.App", {
        "Install": mark(trace, "app-install"), "Run": mark(trace, "app-run")},
        dependencies={"t.Base": "HARD"})
    write_built_component(components, "t.Base", {
        "Install": f"sleep 0.3; {mark(trace, 'base-install')}",
        "Run": f"{mark(trace, 'base-run')}; exec sleep 30"})
    runtime = start()
    wait_state(runtime, "t.App", State.FINISHED)
    order = trace.read_text().split()
    assert sorted(order) == ["app-install", "app-run", "base-install", "base-run"]
    # The nucleus installs before it waits for dependencies: app-install does not wait for
    # t.Base; app-run waits until t.Base is RUNNING (its Run process started).
    assert order.index("app-install") < order.index("base-install") < order.index("base-run")
    assert order.index("app-install") < order.index("app-run")
    assert order.index("base-install") < order.index("app-run")
    assert state(runtime, "t.Base") == State.RUNNING


@pytest.mark.timeout(60)
def test_set_env_is_interpolated_and_step_env_wins(start, components, tmp_path,
                                                   monkeypatch) -> None:
    for name in [n for n in os.environ if n.startswith("VQI_")]:
        monkeypatch.delenv(name)  # what the runtime's own shell passes on is not the point here
    out = tmp_path / "env.json"
    dump = (f"{PYTHON} -c \"import json,os; json.dump({{'env': dict(os.environ), "
            f"'cwd': os.getcwd()}}, open('{out}', 'w'))\"")
    write_built_component(components, "t.Model", files={"model.onnx": b"m"})
    write_built_component(
        components, "t.App",
        {"setEnv": {"GREETING": "{configuration:/Greeting}", "BOTH": "lifecycle",
                    "MODEL_DIR": "{t.Model:artifacts:path}",
                    "APP_DIR": "{artifacts:decompressedPath}"},
         "Run": {"Script": dump, "setEnv": {"BOTH": "step"}}},
        configuration={"Greeting": "hello {iot:thingName}"}, dependencies={"t.Model": "HARD"},
        zips={"app.zip": {"a.txt": "a"}})
    runtime = start(thing_name="tag-line-1")
    wait_state(runtime, "t.App", State.FINISHED)
    seen = json.loads(out.read_text())
    env = seen["env"]
    root = tmp_path / "root"
    assert env["GREETING"] == "hello {iot:thingName}"  # configuration values are not interpolated
    assert env["BOTH"] == "step"
    assert env["MODEL_DIR"] == str(root / "packages/artifacts/t.Model/1.0.0")
    assert Path(env["APP_DIR"], "app", "a.txt").read_text() == "a"
    assert seen["cwd"] == str(root / "work/t.App")
    assert env["AWS_IOT_THING_NAME"] == "tag-line-1"
    assert env["SVCUID"] and env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"]
    assert "STREAM_MANAGER_SERVER_PORT" not in env  # the nucleus sets no STREAM_MANAGER_* variable
    assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == env["SVCUID"]
    assert [n for n in env if n.startswith("VQI_")] == []  # nothing of this product's own


@pytest.mark.timeout(60)
def test_crashing_component_is_restarted_with_backoff_then_broken(start, components,
                                                                   tmp_path) -> None:
    starts = tmp_path / "starts.txt"
    write_built_component(components, "t.Crash", {
        "Run": f"{PYTHON} -c \"import time; open('{starts}', 'a').write(f'{{time.time()}}\\n')\"; "
               "echo dying >&2; exit 4"})
    runtime = start()
    wait_state(runtime, "t.Crash", State.BROKEN)
    times = [float(t) for t in starts.read_text().split()]
    assert len(times) == 3
    first_gap, second_gap = times[1] - times[0], times[2] - times[1]
    assert first_gap >= 0.2 and second_gap >= 0.4  # 0.2 s, then doubled
    status = runtime.supervisor.status("t.Crash")
    assert status.errors == 3 and "exited with code 4" in status.message
    assert wait_for(lambda: json.loads((tmp_path / "root/status.json").read_text())
                    ["components"]["t.Crash"]["state"] == "BROKEN")
    time.sleep(0.6)
    assert len(starts.read_text().split()) == 3  # no restart after BROKEN


@pytest.mark.timeout(60)
def test_a_crashed_runs_leftover_processes_are_killed_before_the_restart(start, components,
                                                                        tmp_path) -> None:
    pids = tmp_path / "pids"
    write_built_component(components, "t.Forks", {
        "Run": f"sleep 60 & echo $! >> {pids}; exit 3"})  # a worker outlives its crashed parent
    runtime = start()
    wait_state(runtime, "t.Forks", State.BROKEN)
    children = [int(p) for p in pids.read_text().split()]
    try:
        assert len(children) == 3
        assert wait_for(lambda: not any(pid_alive(p) for p in children), 5), \
            "a crashed Run's worker kept running beside its restarted instance"
    finally:
        for pid in children:
            kill_quietly(pid)


@pytest.mark.timeout(60)
def test_component_that_recovers_keeps_running(start, components, tmp_path) -> None:
    counter = tmp_path / "count"
    write_built_component(components, "t.Flaky", {
        "Run": f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 2 ] && exec sleep 30; exit 1"})
    runtime = start()
    assert runtime.supervisor.wait_until(
        lambda s: s["t.Flaky"].state == State.RUNNING and s["t.Flaky"].errors == 1, 15)


@pytest.mark.timeout(60)
def test_failed_install_blocks_hard_dependents_only(start, components, tmp_path) -> None:
    attempts = tmp_path / "installs"
    write_built_component(components, "t.Model", {
        "Install": f"echo try >> {attempts}; echo 'sha256 mismatch' >&2; exit 1"})
    write_built_component(components, "t.Hard", {"Install": f"touch {tmp_path / 'hard'}",
                                                  "Run": "exec sleep 30"},
                          dependencies={"t.Model": "HARD"})
    write_built_component(components, "t.Soft", {"Run": f"touch {tmp_path / 'soft'}"},
                          dependencies={"t.Model": "SOFT"})
    write_built_component(components, "t.Hard2", {"Run": "true"}, dependencies={"t.Hard": "HARD"})
    write_built_component(components, "t.Soft2", {"Run": "true"}, dependencies={"t.Hard": "SOFT"})
    runtime = start()
    wanted = {"t.Model": "BROKEN", "t.Hard": "INSTALLED", "t.Soft": "FINISHED",
              "t.Hard2": "INSTALLED", "t.Soft2": "FINISHED"}
    assert runtime.supervisor.wait_until(
        lambda s: {n: x.state.value for n, x in s.items()} == wanted, 15)
    assert attempts.read_text().split() == ["try"] * 3
    assert "HARD dependency t.Model is BROKEN" in runtime.supervisor.status("t.Hard").message
    wait_state(runtime, "t.Soft2", State.FINISHED)  # a blocked SOFT dependency does not wait
    assert state(runtime, "t.Hard2") == State.INSTALLED
    assert "HARD dependency t.Hard is blocked" in runtime.supervisor.status("t.Hard2").message
    # Install does not wait for dependencies; Run does.
    assert (tmp_path / "hard").exists() and (tmp_path / "soft").exists()
    log = (tmp_path / "root/logs/t.Model.log").read_text()
    assert "[WARN] (Install/stderr) t.Model: sha256 mismatch" in log


@pytest.mark.timeout(60)
def test_install_timeout_is_an_error(start, components) -> None:
    write_built_component(components, "t.Slow", {"Install": {"Script": "sleep 30", "Timeout": 0.5}})
    runtime = start(policy=RestartPolicy(max_errors=1, stop_grace_s=0.5))
    wait_state(runtime, "t.Slow", State.BROKEN)
    assert "Install timed out after 0.5s" in runtime.supervisor.status("t.Slow").message


@pytest.mark.timeout(60)
def test_install_only_component_is_finished(start, components, tmp_path) -> None:
    write_built_component(components, "t.Data", {"Install": f"touch {tmp_path / 'done'}"})
    runtime = start()
    wait_state(runtime, "t.Data", State.FINISHED)
    assert (tmp_path / "done").exists()


@pytest.mark.timeout(60)
def test_skip_if_skips_a_step(start, components, tmp_path) -> None:
    write_built_component(components, "t.Skip", {
        "Install": {"Script": "exit 9", "SkipIf": "onpath sh"}, "Run": "true"})
    runtime = start()
    wait_state(runtime, "t.Skip", State.FINISHED)


@pytest.mark.timeout(60)
def test_steps_not_emulated_are_named_in_the_log(start, components, tmp_path) -> None:
    write_built_component(components, "t.Odd", {
        "Bootstrap": {"Script": "exit 1", "RequiresPrivilege": True}, "Run": "true"})
    runtime = start()
    wait_state(runtime, "t.Odd", State.FINISHED)
    log = (tmp_path / "root/logs/t.Odd.log").read_text()
    assert "lifecycle step bootstrap is not emulated locally; ignored" in log
    assert "RequiresPrivilege is not emulated" in log


@pytest.mark.timeout(60)
def test_output_goes_to_each_components_log_with_timestamps(start, components, tmp_path) -> None:
    write_built_component(components, "t.One", {"Run": "echo out-one; echo err-one >&2"})
    write_built_component(components, "t.Two", {"Run": "echo out-two"})
    runtime = start()
    wait_state(runtime, "t.One", State.FINISHED)
    wait_state(runtime, "t.Two", State.FINISHED)
    logs = tmp_path / "root/logs"
    one = (logs / "t.One.log").read_text()
    two = (logs / "t.Two.log").read_text()
    assert wait_for(lambda: "err-one" in (logs / "t.One.log").read_text())
    one = (logs / "t.One.log").read_text()
    line = next(x for x in one.splitlines() if x.endswith("out-one"))
    assert line[:4].isdigit() and line[10] == "T" and "[INFO] (Run/stdout) t.One:" in line
    assert "[WARN] (Run/stderr) t.One: err-one" in one
    assert "out-two" in two and "out-one" not in two
    assert "t.One FINISHED" in (logs / "greengrass.log").read_text()


@pytest.mark.timeout(60)
def test_stop_runs_shutdown_and_kills_the_whole_process_group(start, components,
                                                              tmp_path) -> None:
    pids = tmp_path / "pids"
    write_built_component(components, "t.Svc", {
        "Run": f"trap '' TERM; sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; wait",
        "Shutdown": f"touch {tmp_path / 'shutdown-ran'}"})
    runtime = start()
    assert runtime.wait_settled(15) == {"t.Svc": "RUNNING"}
    assert wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2)
    children = [int(p) for p in pids.read_text().split()]
    try:
        runtime.stop()
        assert (tmp_path / "shutdown-ran").exists()
        assert wait_for(lambda: not any(pid_alive(p) for p in children), 5)
        assert state(runtime, "t.Svc") == State.FINISHED
        status = json.loads((tmp_path / "root/status.json").read_text())
        assert status["components"]["t.Svc"]["state"] == "FINISHED"
    finally:
        for pid in children:
            kill_quietly(pid)


@pytest.mark.timeout(60)
def test_stop_signals_dependents_before_their_dependencies(start, components, tmp_path) -> None:
    ready, stopped = tmp_path / "ready", tmp_path / "sigterm"

    def service(name: str) -> dict:
        """Records its SIGTERM, after saying it has its trap in place."""
        return {"Run": f"trap 'echo {name} >> {stopped}; exit 0' TERM; echo {name} >> {ready}; "
                       "sleep 600 & wait"}

    # Names sort differently from the dependency order, so neither order can pass by accident.
    write_built_component(components, "t.Camera", service("t.Camera"))
    write_built_component(components, "t.Detector", service("t.Detector"),
                          dependencies={"t.Camera": "HARD"})
    write_built_component(components, "t.Archive", service("t.Archive"),
                          dependencies={"t.Detector": "HARD", "t.Camera": "SOFT"})
    runtime = start()
    assert wait_for(lambda: ready.exists() and len(ready.read_text().split()) == 3, 30)
    runtime.stop()
    order = stopped.read_text().split()
    assert sorted(order) == ["t.Archive", "t.Camera", "t.Detector"]
    for dependent, dependency in (("t.Archive", "t.Detector"), ("t.Archive", "t.Camera"),
                                  ("t.Detector", "t.Camera")):
        assert order.index(dependent) < order.index(dependency), order


@pytest.mark.timeout(60)
def test_configuration_overrides_merge_and_reset(start, components, tmp_path) -> None:
    out = tmp_path / "out"
    write_built_component(components, "t.Cfg", {"Run": f"echo {{configuration:/A}} "
                                                        f"{{configuration:/B/C}} > {out}"},
                          configuration={"A": "a0", "B": {"C": "c0", "D": "d0"}})
    overrides = {"t.Cfg": {"merge": {"A": "a1", "B": {"C": "c1"}}, "reset": ["/B/D"]}}
    runtime = start(overrides=overrides)
    wait_state(runtime, "t.Cfg", State.FINISHED)
    assert out.read_text().split() == ["a1", "c1"]
    assert runtime.ipc.get_configuration("t.Cfg")["B"] == {"C": "c1", "D": "d0"}


@pytest.mark.timeout(60)
def test_stop_during_install_kills_it(start, components, tmp_path) -> None:
    pid_file = tmp_path / "pid"
    write_built_component(components, "t.Pip", {
        "Install": f"echo $$ > {pid_file}; exec sleep 60", "Run": "true"})
    runtime = start()
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    pid = int(pid_file.read_text())
    try:
        runtime.stop()
        assert wait_for(lambda: not pid_alive(pid), 5)
        status = runtime.supervisor.status("t.Pip")
        assert (status.state, status.message) == (State.NEW, "stopped during NEW")
    finally:
        kill_quietly(pid)


@pytest.mark.timeout(60)
def test_deep_root_gets_a_short_socket_path_recorded_in_the_root(components, tmp_path) -> None:
    write_built_component(components, "t.Any", {"Run": "true"})
    root = tmp_path / ("d" * 60) / ("e" * 60)
    runtime = LocalRuntime(RuntimeOptions(root=root, components_dir=components))
    try:
        runtime.start(run_components=False)
        socket = Path((root / "ipc-socket-path").read_text().strip())
        assert socket.exists() and len(str(socket)) < 100 and root not in socket.parents
        env = (root / "env" / "t.Any.env").read_text()
        assert f"AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT={socket}" in env
    finally:
        runtime.stop()
    assert not socket.exists() and not socket.parent.exists()


@pytest.mark.timeout(60)
def test_a_step_that_cannot_start_is_an_error_not_a_hang(start, components) -> None:
    write_built_component(components, "t.Gone", {"Install": "rm -rf {work:path}", "Run": "true"})
    # As ggc_user the Install could not remove its own work folder (root owns work/).
    runtime = start(policy=RestartPolicy(max_errors=2, backoff_initial_s=0.1),
                    overrides=AS_RUNTIME_USER)
    wait_state(runtime, "t.Gone", State.BROKEN)
    assert "Run could not start" in runtime.supervisor.status("t.Gone").message


@pytest.mark.timeout(60)
def test_startup_step_makes_a_background_service_running_until_stopped(start, components,
                                                                       tmp_path) -> None:
    pid_file = tmp_path / "daemon.pid"
    write_built_component(components, "t.Daemon", {
        "Startup": f"sleep 60 > /dev/null 2>&1 & echo $! > {pid_file}"})
    runtime = start()
    wait_state(runtime, "t.Daemon", State.RUNNING)
    pid = int(pid_file.read_text())
    try:
        assert pid_alive(pid)
        runtime.stop()
        assert wait_for(lambda: not pid_alive(pid), 5)
        assert state(runtime, "t.Daemon") == State.FINISHED
    finally:
        kill_quietly(pid)


@pytest.mark.timeout(60)
def test_run_timeout_stops_the_process_as_an_error(start, components) -> None:
    write_built_component(components, "t.Hang", {"Run": {"Script": "exec sleep 60",
                                                         "Timeout": 0.3}})
    runtime = start(policy=RestartPolicy(max_errors=1, stop_grace_s=0.5))
    wait_state(runtime, "t.Hang", State.BROKEN)
    assert "Run timed out after 0.3s" in runtime.supervisor.status("t.Hang").message


@pytest.mark.timeout(60)
def test_stop_also_kills_processes_that_left_the_process_group(start, components,
                                                               tmp_path) -> None:
    pid_file = tmp_path / "escaped.pid"
    write_built_component(components, "t.Escape", {
        "Run": f"setsid sleep 60 > /dev/null 2>&1 & echo $! > {pid_file}; exec sleep 60"})
    runtime = start()
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
    pid = int(pid_file.read_text())
    try:
        runtime.stop()
        assert wait_for(lambda: not pid_alive(pid), 5)
    finally:
        kill_quietly(pid)


@pytest.mark.timeout(60)
def test_one_runtime_per_root(start, components, tmp_path) -> None:
    write_built_component(components, "t.Any", {"Run": "true"})
    start()
    second = LocalRuntime(RuntimeOptions(root=tmp_path / "root", components_dir=components))
    with pytest.raises(RootBusyError, match="another localgg runtime is using"):
        second.start()
    second.stop()


def report(state: str, then: str = "") -> str:
    """A Run/Startup script: report `state` over IPC with the real SDK, print it, then `then`."""
    code = ("from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2 as C; "
            f"C().update_state(state='{state}'); print('reported {state}', flush=True)")
    return f'{SDK_PYTHON} -c "{code}"' + (f"; {then}" if then else "")


@pytest.mark.timeout(60)
def test_reported_errored_restarts_the_component_until_broken(start, components,
                                                              tmp_path) -> None:
    runs = tmp_path / "runs"
    write_built_component(components, "t.Ipc", {"Run": f"echo x >> {runs}; "
                                                       + report("ERRORED", "exec sleep 30")})
    runtime = start(overrides=AS_RUNTIME_USER)
    wait_state(runtime, "t.Ipc", State.BROKEN, 30)
    assert len(runs.read_text().split()) == 3
    assert "component reported ERRORED" in runtime.supervisor.status("t.Ipc").message
    runtime.write_status()
    status = json.loads((tmp_path / "root/status.json").read_text())["components"]["t.Ipc"]
    assert (status["state"], status["reportedState"]) == ("BROKEN", "ERRORED")


@pytest.mark.timeout(60)
def test_reported_running_does_not_change_a_run_components_state(start, components,
                                                                 tmp_path) -> None:
    write_built_component(components, "t.Run", {"Run": report("RUNNING", "exec sleep 30")})
    runtime = start(overrides=AS_RUNTIME_USER)
    log = tmp_path / "root/logs/t.Run.log"
    assert wait_for(lambda: "UpdateState RUNNING while RUNNING: ignored" in log.read_text(), 20)
    status = runtime.supervisor.status("t.Run")
    assert (status.state, status.message) == (State.RUNNING, "")


@pytest.mark.timeout(60)
def test_startup_is_starting_until_the_component_reports_running(start, components,
                                                                 tmp_path) -> None:
    gate = tmp_path / "gate"
    write_built_component(components, "t.Svc", {"Startup": {
        "Script": f"while [ ! -e {gate} ]; do sleep 0.05; done; " + report("RUNNING",
                                                                          "exec sleep 30"),
        "Timeout": 30}})
    runtime = start(overrides=AS_RUNTIME_USER)
    assert wait_for(lambda: state(runtime, "t.Svc") == State.STARTING)
    time.sleep(0.5)
    assert state(runtime, "t.Svc") == State.STARTING  # a live process is not readiness
    gate.touch()
    wait_state(runtime, "t.Svc", State.RUNNING, 20)
    assert pid_alive(runtime.supervisor.status("t.Svc").pid)  # the process keeps running


@pytest.mark.timeout(60)
def test_startup_that_never_reports_running_times_out_as_an_error(start, components) -> None:
    write_built_component(components, "t.Mute", {"Startup": {"Script": "exec sleep 60",
                                                              "Timeout": 0.5}})
    runtime = start(policy=RestartPolicy(max_errors=1, stop_grace_s=0.5))
    wait_state(runtime, "t.Mute", State.BROKEN)
    assert "Startup timed out after 0.5s" in runtime.supervisor.status("t.Mute").message


@pytest.mark.timeout(60)
def test_errors_are_counted_per_state(start, components, tmp_path) -> None:
    count = tmp_path / "count"
    # Two Install failures, then two crashes while RUNNING: neither state reaches three.
    write_built_component(components, "t.Mixed", {
        "Install": f"echo i >> {count}; [ $(grep -c i {count}) -ge 3 ]",
        "Run": f"echo r >> {count}; [ $(grep -c r {count}) -ge 3 ] && exec sleep 30; exit 1"})
    runtime = start(policy=RestartPolicy())
    assert wait_for(lambda: count.exists() and count.read_text().split().count("r") == 3, 20)
    time.sleep(0.3)
    status = runtime.supervisor.status("t.Mixed")
    assert (status.state, status.errors) == (State.RUNNING, 2)
    assert count.read_text().split() == ["i", "i", "i", "r", "r", "r"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("skip_if,skipped", [("exists /", True), ("! exists /", False),
                                             ("!onpath sh", False), ("onpath sh", True)])
def test_skip_if_knows_negation(start, components, tmp_path, skip_if, skipped) -> None:
    write_built_component(components, "t.Skip", {
        "Install": {"Script": f"touch {tmp_path / 'ran'}", "SkipIf": skip_if}})
    runtime = start()
    wait_state(runtime, "t.Skip", State.FINISHED)
    assert (tmp_path / "ran").exists() is not skipped


@pytest.mark.timeout(60)
def test_skip_if_with_an_unknown_operator_is_an_error(start, components) -> None:
    write_built_component(components, "t.Bad", {"Install": {"Script": "true",
                                                            "SkipIf": "missing /x"}})
    runtime = start(policy=RestartPolicy(max_errors=1))
    wait_state(runtime, "t.Bad", State.BROKEN)
    assert "invalid SkipIf 'missing /x'" in runtime.supervisor.status("t.Bad").message
