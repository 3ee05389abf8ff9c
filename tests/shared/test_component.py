"""shared.component: one edge and one exit-code table for every component process.

The exit codes are checked on the real component processes (python -m vqi_*) against the local
IPC server with the real SDK client; the main loop's own rules on a small component in-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
import yaml

from shared import component as C
from shared.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = {
    "com.example.vqi.ImageSource": ("image-source", "vqi_image_source"),
    "com.example.vqi.Inference": ("inference", "vqi_inference"),
    "com.example.vqi.Uploader": ("uploader", "vqi_uploader"),
    "com.example.vqi.Dashboard": ("dashboard", "vqi_dashboard"),
}
IPC_ENV = ("SVCUID", "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
           "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH")


def recipe_defaults(name: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(DefaultConfiguration without accessControl, accessControl) as a default nucleus holds."""
    folder = COMPONENTS[name][0]
    recipe = yaml.safe_load((ROOT / "components" / folder / "recipe.yaml").read_text())
    config = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    return config, config.pop("accessControl", {})


def component_env(name: str, extra: Dict[str, str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in IPC_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "components" / COMPONENTS[name][0]),
                                         str(ROOT)])
    env.update(extra)
    return env


def start(name: str, extra: Dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", COMPONENTS[name][1]],
                            env=component_env(name, extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    from localgg.ipc_server import IpcServer

    srv = IpcServer(tmp_path / "ipc.sock", tmp_path / "cloud.jsonl", "line-7")
    srv.start()
    yield srv
    srv.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_without_a_nucleus_a_component_exits_2(name: str) -> None:
    proc = start(name, {})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == C.EXIT_NO_NUCLEUS, out
    assert "cannot connect to the Greengrass nucleus over IPC" in out


BAD_VALUE = {"com.example.vqi.ImageSource": ("MaxInFlight", 0),
             "com.example.vqi.Inference": ("ConfidenceThreshold", 2),
             "com.example.vqi.Uploader": ("OkSampleRate", 5),
             "com.example.vqi.Dashboard": ("Port", 70000)}


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_a_configuration_error_is_reported_errored_and_exits_1(name: str, server: Any,
                                                               tmp_path: Path) -> None:
    config, acl = recipe_defaults(name)
    key, value = BAD_VALUE[name]
    config[key] = value
    server.add_component(name, config, acl)
    proc = start(name, {**server.ipc_env(name), "VQI_WORK_DIR": str(tmp_path)})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == C.EXIT_CANNOT_START, out
    assert "cannot start" in out and key in out
    assert server.component_state(name) == "ERRORED"


def image_source(server: Any, tmp_path: Path) -> subprocess.Popen:
    name = "com.example.vqi.ImageSource"
    config, acl = recipe_defaults(name)
    config["InboxDir"] = str(tmp_path / "inbox")
    server.add_component(name, config, acl)
    proc = start(name, {**server.ipc_env(name), "VQI_WORK_DIR": str(tmp_path / "work")})
    assert wait_for(lambda: server.component_state(name) == "RUNNING"), proc.poll()
    return proc


def test_sigterm_stops_a_running_component_with_exit_0(server: Any, tmp_path: Path) -> None:
    proc = image_source(server, tmp_path)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == C.EXIT_STOPPED, out
    assert "signal 15: stopping" in out


def test_a_lost_nucleus_connection_exits_3(server: Any, tmp_path: Path) -> None:
    proc = image_source(server, tmp_path)
    server.stop()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == C.EXIT_NUCLEUS_LOST, out
    assert "lost the IPC connection" in out


class Toy(C.Idle):
    """A component whose turns, starts and updates are scripted by the test."""

    def __init__(self, raw: Dict[str, Any], turns: str = "") -> None:
        super().__init__()
        self.seen: List[Dict[str, Any]] = [raw]
        self.turns = list(turns)  # "x" = this turn fails, "." = it works; then turns just wait
        self.stopped = False

    def start(self) -> None:
        if self.seen[0].get("Broken"):
            raise ConfigError("invalid configuration: Broken=True")

    def run_once(self, timeout: float) -> None:
        if self.turns and self.turns.pop(0) == "x":
            raise RuntimeError("scripted failure")
        super().run_once(timeout)

    def reconfigure(self, raw: Dict[str, Any]) -> None:
        if raw.get("Rate", 0) > 1:
            raise ConfigError("invalid configuration: Rate must be <= 1")
        self.seen.append(raw)

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def toy_ipc(server: Any) -> Iterator[Any]:
    from shared.ipc import IpcClient

    server.add_component("test.Toy", {"Rate": 0.5}, {})
    with pytest.MonkeyPatch.context() as patch:
        for key, value in server.ipc_env("test.Toy").items():
            patch.setenv(key, value)
        client = IpcClient()
    yield client
    client.close()


def serve_in_thread(edge: C.Edge) -> Tuple[threading.Thread, List[int]]:
    codes: List[int] = []
    thread = threading.Thread(target=lambda: codes.append(edge.serve()))
    thread.start()
    return thread, codes


def test_a_component_that_cannot_start_is_reported_errored(server: Any, toy_ipc: Any) -> None:
    server.update_configuration("test.Toy", [], {"Broken": True})
    assert C.Edge(toy_ipc).start(lambda ipc, raw: Toy(raw)) is False
    assert server.component_state("test.Toy") == "ERRORED"


def test_an_update_made_while_the_component_starts_is_applied(server: Any,
                                                              toy_ipc: Any) -> None:
    edge = C.Edge(toy_ipc)

    def slow_build(ipc: Any, raw: Dict[str, Any]) -> Toy:
        server.update_configuration("test.Toy", ["Rate"], 0.75)  # after the first read
        return Toy(raw)

    assert edge.start(slow_build)
    toy = edge.component
    assert isinstance(toy, Toy) and toy.seen[0]["Rate"] == 0.5
    thread, codes = serve_in_thread(edge)
    try:
        assert wait_for(lambda: any(raw.get("Rate") == 0.75 for raw in toy.seen[1:]), 10)
    finally:
        edge.request_stop()
        thread.join(10)
    assert codes == [C.EXIT_STOPPED] and toy.stopped
    assert server.component_state("test.Toy") == "RUNNING"


def test_a_rejected_update_is_logged_and_the_component_keeps_running(
        server: Any, toy_ipc: Any, caplog: pytest.LogCaptureFixture) -> None:
    edge = C.Edge(toy_ipc)
    assert edge.start(lambda ipc, raw: Toy(raw))
    toy = edge.component
    assert isinstance(toy, Toy)
    thread, codes = serve_in_thread(edge)
    try:
        with caplog.at_level("ERROR"):
            server.update_configuration("test.Toy", ["Rate"], 7)
            assert wait_for(lambda: "Rate must be <= 1" in caplog.text, 10)
        server.update_configuration("test.Toy", ["Rate"], 0.25)
        assert wait_for(lambda: toy.seen[-1].get("Rate") == 0.25, 10)
    finally:
        edge.request_stop()
        thread.join(10)
    assert codes == [C.EXIT_STOPPED]
    assert [raw["Rate"] for raw in toy.seen] == [0.5, 0.25]


def test_a_main_loop_that_keeps_failing_exits_4(server: Any, toy_ipc: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "MAX_LOOP_FAILURES", 3)
    monkeypatch.setattr(C, "FAILURE_PAUSE_S", 0.01)
    edge = C.Edge(toy_ipc)
    assert edge.start(lambda ipc, raw: Toy(raw, turns="x" * 10))
    thread, codes = serve_in_thread(edge)
    thread.join(10)
    assert codes == [C.EXIT_LOOP_FAILED] and len(edge.component.turns) == 7


def test_failures_that_are_not_in_a_row_are_survived(server: Any, toy_ipc: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "MAX_LOOP_FAILURES", 2)
    monkeypatch.setattr(C, "FAILURE_PAUSE_S", 0.01)
    edge = C.Edge(toy_ipc)
    assert edge.start(lambda ipc, raw: Toy(raw, turns="x.x.x."))
    thread, codes = serve_in_thread(edge)
    try:
        assert wait_for(lambda: not edge.component.turns, 20)
    finally:
        edge.request_stop()
        thread.join(10)
    assert codes == [C.EXIT_STOPPED]
