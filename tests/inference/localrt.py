"""The local Greengrass IPC server with the Inference component's real recipe configuration.

Tests talk to it with the real awsiotsdk client (shared.ipc.IpcClient), as a test component
allowed to publish image events and watch results, exactly as ImageSource / Uploader would.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "components" / "inference" / "recipe.yaml"
INFERENCE = "com.example.vqi.Inference"
OBSERVER = "test.vqi.Observer"
THING = "test-thing"

OBSERVER_ACL = {
    "aws.greengrass.ipc.pubsub": {
        "observer:1": {"operations": ["*"], "resources": ["*"]},
    },
    "aws.greengrass.ipc.mqttproxy": {
        "observer:2": {"operations": ["*"], "resources": ["*"]},
    },
}


def recipe_configuration() -> Dict[str, Any]:
    """DefaultConfiguration from the recipe, as a default nucleus holds it (not interpolated)."""
    return yaml.safe_load(RECIPE.read_text())["ComponentConfiguration"]["DefaultConfiguration"]


class Collector:
    """Messages received on subscribed topics, with a wait helper."""

    def __init__(self) -> None:
        self.messages: Dict[str, List[Any]] = {}
        self._cond = threading.Condition()

    def __call__(self, payload: Any, topic: str) -> None:
        with self._cond:
            self.messages.setdefault(topic, []).append(payload)
            self._cond.notify_all()

    def on(self, topic: str) -> List[Any]:
        with self._cond:
            return list(self.messages.get(topic, []))

    def wait(self, topic: str, count: int, timeout: float = 30.0) -> List[Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages.get(topic, [])) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.messages.get(topic, []))


@contextmanager
def env(values: Dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class LocalRuntime:
    """IpcServer + registered Inference component + an observer client."""

    def __init__(self, configuration: Optional[Dict[str, Any]] = None) -> None:
        from localgg.ipc_server import IpcServer

        self.dir = Path(tempfile.mkdtemp(prefix="vqi-inf-"))
        self.server = IpcServer(self.dir / "ipc.sock", self.dir / "cloud.jsonl", THING)
        # The tests' model has random weights and cannot pass the shipped acceptance set: the
        # gate is off here and tested on its own (test_acceptance.py).
        config = configuration if configuration is not None else {
            **recipe_configuration(), "AcceptancePolicy": "OFF"}
        acl = config.pop("accessControl", None)
        self.server.start()
        self.server.add_component(INFERENCE, config, acl)
        self.server.add_component(OBSERVER, {}, OBSERVER_ACL)
        self.collector = Collector()
        self._clients: List[Any] = []

    def client(self, name: str) -> Any:
        from shared.ipc import IpcClient

        with env(self.server.ipc_env(name)):
            client = IpcClient()
        self._clients.append(client)
        return client

    def observer(self, *topics: str) -> Any:
        client = self.client(OBSERVER)
        for topic in topics:
            client.subscribe_json(topic, self.collector)
        return client

    def cloud_messages(self) -> List[Dict[str, Any]]:
        path = self.server.cloud_log
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        for client in self._clients:
            try:
                client.close()
            except Exception:
                pass
        self.server.stop()
