"""Helpers for the IPC server tests: a real server, and real SDK clients in separate processes.

Run as a script, this file is the client driver: it connects with the unmodified
``GreengrassCoreIPCClientV2`` (socket path and SVCUID from the environment, as a component
would), reads one JSON command per line on stdin and writes JSON lines on stdout: one reply per
command (``{"ok": ...}`` or ``{"error": "<SDK exception class>", "message": ...}``) and one line
per stream event (``{"event": <subscription id>, ...}``).
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
CLIENT_PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable

ALLOW_ALL = {
    "aws.greengrass.ipc.pubsub": {"all:pubsub": {"operations": ["*"], "resources": ["*"]}},
    "aws.greengrass.ipc.mqttproxy": {"all:mqtt": {"operations": ["*"], "resources": ["*"]}},
}


@contextmanager
def running_ipc_server(thing_name: str = "test-thing") -> Iterator[Any]:
    """An ``IpcServer`` on a short socket path (Unix socket paths are limited to 107 bytes)."""
    from localgg.ipc_server import IpcServer

    tmp = Path(tempfile.mkdtemp(prefix="ggipc"))
    server = IpcServer(tmp / "ipc.sock", tmp / "cloud" / "iotcore.jsonl", thing_name=thing_name)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


class ClientProcess:
    """A driver process acting as one component through the real SDK."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [CLIENT_PYTHON, __file__], env={**os.environ, **env}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            hello = self._next_reply(timeout=30)
        except TimeoutError:
            self.proc.kill()
            self.proc.wait()
            raise
        if "error" in hello:
            self.proc.wait(timeout=10)
            raise ConnectionError(f"{hello['error']}: {hello.get('message')}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            item = json.loads(line)
            (self.events if "event" in item else self.lines).put(item)
        self.lines.put({"error": "ProcessExited", "message": self._stderr_tail()})

    def _stderr_tail(self) -> str:
        try:
            return (self.proc.stderr.read() if self.proc.stderr else "")[-2000:]
        except ValueError:
            return ""

    def _next_reply(self, timeout: float) -> dict[str, Any]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no reply from the client process") from None

    def call(self, op: str, timeout: float = 15, **args: Any) -> dict[str, Any]:
        """Send one command; return its reply line."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._next_reply(timeout)

    def next_event(self, timeout: float = 10) -> dict[str, Any]:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no stream event arrived") from None

    def drain(self, quiet: float = 1.0) -> list[dict[str, Any]]:
        """Every event that arrives until none has come for ``quiet`` seconds."""
        events = []
        while True:
            try:
                events.append(self.events.get(timeout=quiet))
            except queue.Empty:
                return events

    def no_event_within(self, seconds: float) -> bool:
        try:
            self.events.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("exit", timeout=5)
            except (TimeoutError, BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ClientProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def client_for(server: Any, name: str, configuration: dict | None = None,
               access_control: dict | None = None) -> ClientProcess:
    """Register ``name`` on ``server`` and start a client process acting as it."""
    server.add_component(name, configuration or {}, access_control)
    return ClientProcess(server.ipc_env(name))


def run_client_script(env: dict[str, str], code: str, timeout: float = 30) -> \
        subprocess.CompletedProcess[str]:
    """Run a one-off Python snippet with the real SDK as a component would."""
    return subprocess.run([CLIENT_PYTHON, "-c", code], env={**os.environ, **env}, text=True,
                          capture_output=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Driver (runs in the client process)


def _driver() -> None:  # pragma: no cover - runs in a subprocess
    from awsiot.greengrasscoreipc import model
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    out_lock = threading.Lock()

    def emit(item: dict[str, Any]) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(item) + "\n")
            sys.stdout.flush()

    def error(exc: BaseException) -> dict[str, Any]:
        return {"error": type(exc).__name__,
                "message": getattr(exc, "message", None) or str(exc)}

    try:
        client = GreengrassCoreIPCClientV2()
    except Exception as exc:
        emit(error(exc))
        return
    emit({"ok": "connected"})
    operations: dict[str, Any] = {}

    def on_topic_event(sub_id: str):
        def handle(event: Any) -> None:
            if event.json_message is not None:
                emit({"event": sub_id, "topic": event.json_message.context.topic,
                      "json": event.json_message.message})
            else:
                emit({"event": sub_id, "topic": event.binary_message.context.topic,
                      "binary_b64": base64.b64encode(event.binary_message.message).decode()})
        return handle

    def on_iot_event(sub_id: str):
        def handle(event: Any) -> None:
            emit({"event": sub_id, "topic": event.message.topic_name,
                  "payload_b64": base64.b64encode(event.message.payload).decode()})
        return handle

    def on_config_event(sub_id: str):
        def handle(event: Any) -> None:
            e = event.configuration_update_event
            emit({"event": sub_id, "componentName": e.component_name, "keyPath": e.key_path})
        return handle

    def publish_message(cmd: dict[str, Any]) -> Any:
        if "binary_b64" in cmd:
            return model.PublishMessage(binary_message=model.BinaryMessage(
                message=base64.b64decode(cmd["binary_b64"])))
        return model.PublishMessage(json_message=model.JsonMessage(message=cmd["json"]))

    def run(cmd: dict[str, Any]) -> Any:
        op = cmd["op"]
        if op == "publish":
            client.publish_to_topic(topic=cmd["topic"], publish_message=publish_message(cmd))
            return True
        if op == "subscribe":
            resp, operation = client.subscribe_to_topic(
                topic=cmd["topic"], receive_mode=cmd.get("receive_mode"),
                on_stream_event=on_topic_event(cmd["id"]))
            operations[cmd["id"]] = operation
            return resp.topic_name
        if op == "close_stream":
            operations.pop(cmd["id"]).close().result(10)
            return True
        if op == "publish_iot":
            payload = base64.b64decode(cmd["payload_b64"])
            client.publish_to_iot_core(topic_name=cmd["topic"], qos=cmd.get("qos", "1"),
                                       payload=payload)
            return True
        if op == "subscribe_iot":
            _, operation = client.subscribe_to_iot_core(
                topic_name=cmd["topic"], qos=cmd.get("qos", "1"),
                on_stream_event=on_iot_event(cmd["id"]))
            operations[cmd["id"]] = operation
            return True
        if op == "get_config":
            resp = client.get_configuration(component_name=cmd.get("component"),
                                            key_path=cmd.get("key_path"))
            return {"componentName": resp.component_name, "value": resp.value}
        if op == "update_config":
            client.update_configuration(key_path=cmd.get("key_path"),
                                        value_to_merge=cmd["value"],
                                        timestamp=datetime.fromtimestamp(
                                            cmd.get("timestamp", time.time()), timezone.utc))
            return True
        if op == "subscribe_config":
            _, operation = client.subscribe_to_configuration_update(
                component_name=cmd.get("component"), key_path=cmd.get("key_path"),
                on_stream_event=on_config_event(cmd["id"]))
            operations[cmd["id"]] = operation
            return True
        if op == "update_state":
            client.update_state(state=cmd["state"])
            return True
        if op == "get_secret":  # an operation the local runtime does not emulate
            client.get_secret_value(secret_id=cmd["secret_id"])
            return True
        if op == "exit":
            return "bye"
        raise ValueError(f"unknown driver op {op}")

    for line in sys.stdin:
        cmd = json.loads(line)
        started = time.monotonic()
        try:
            result: dict[str, Any] = {"ok": run(cmd)}
        except Exception as exc:
            result = error(exc)
        result["seconds"] = round(time.monotonic() - started, 3)
        emit(result)
        if cmd["op"] == "exit":
            break
    client.close()


if __name__ == "__main__":
    _driver()
