"""A real uploader process between the local IPC server and the local Stream Manager.

The test process plays Inference (publishes results) and ImageSource (collects `vqi/archived`
confirmations) through the real awsiotsdk IPC client; the uploader runs as
`python -m vqi_uploader` with the environment the nucleus would give it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import yaml

from localgg.ipc_server import IpcServer
from localgg.stream_manager import StreamManagerServer
from shared.ipc import IpcClient
from shared.messages import Detection, InspectionResult, ModelInfo, to_json

REPO = Path(__file__).resolve().parents[2]
UPLOADER = "com.example.vqi.Uploader"
PEER = "test.InferenceAndImageSource"
BUCKET = "review-bucket"
THING = "test-thing"


def recipe_defaults() -> Dict[str, Any]:
    with open(REPO / "components" / "uploader" / "recipe.yaml", encoding="utf-8") as fh:
        recipe = yaml.safe_load(fh)
    return recipe["ComponentConfiguration"]["DefaultConfiguration"]


def make_result(image_id: str, path: str, verdict: str, scores: List[float]) -> Dict[str, Any]:
    """A schema-valid result for a 100 x 400 image, one 30 x 40 px box per score."""
    dets = [
        Detection(0, "scratch", s, [10.0 * i, 20.0, 10.0 * i + 30, 60.0],
                  [0.1 * i, 0.05, 0.1 * i + 0.3, 0.15])
        for i, s in enumerate(scores)
    ]
    result = InspectionResult(
        image_id=image_id, path=path, verdict=verdict, detections=dets,
        model=ModelInfo("vqi-yolo", "1.0.0", "0" * 64), timings_ms={"total": 12.5},
        image_width=100, image_height=400, camera_id="cam1", time="2026-03-07T10:00:00.000Z",
        error="corrupt_image: cannot decode" if verdict == "ERROR" else None,
    )
    return json.loads(to_json(result))


class Rig:
    def __init__(self, tmp: Path, monkeypatch: Any, config: Optional[Dict[str, Any]] = None):
        self.tmp = tmp
        self.monkeypatch = monkeypatch
        self.inbox = tmp / "inbox"
        self.inbox.mkdir()
        self.work = tmp / "work"
        self.kernel = tmp / "kernel"  # the nucleus root: where Inference and the Dashboard work
        self.sm_root = tmp / "sm"
        self.log_path = tmp / "uploader.log"
        self.token = "test-token-123"
        self.sm: Optional[StreamManagerServer] = None
        self.sm_port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.peer: Optional[IpcClient] = None
        self.archived: Dict[str, List[Dict[str, Any]]] = {}
        self.metrics: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        defaults = recipe_defaults()
        self.config = {**defaults, "S3Bucket": BUCKET, "ReconnectMaxSeconds": 0.5,
                       "StreamManagerRequestTimeoutSeconds": 5, **(config or {})}
        self.ipc = IpcServer(tmp / "ipc.sock", tmp / "cloud.jsonl", thing_name=THING)
        self.ipc.start()
        self.ipc.add_component(PEER, {}, {"aws.greengrass.ipc.pubsub": {"peer:1": {
            "operations": ["aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"],
            "resources": ["vqi/results", "vqi/archived", "vqi/metrics", "vqi/challenger",
                          "vqi/feedback"]}}})

    # -- servers and process -------------------------------------------------------------------
    def start_sm(self, online: bool = True) -> None:
        self.sm = StreamManagerServer(self.sm_root, port=self.sm_port, auth_token=self.token)
        self.sm.set_online(online)
        self.sm.start()
        self.sm_port = self.sm.port

    def stop_sm(self) -> None:
        if self.sm is not None:
            self.sm.stop()
            self.sm = None

    def start_uploader(self, prefix: Optional[List[str]] = None) -> None:
        """Start the process (`prefix`: a wrapper command, e.g. strace)."""
        # A fresh registration per start, as the nucleus does: new SVCUID, no reported state.
        self.ipc.add_component(UPLOADER, self.config, recipe_defaults()["accessControl"])
        env = {**os.environ, **self.ipc.ipc_env(UPLOADER),
               "STREAM_MANAGER_SERVER_PORT": str(self.sm_port),
               "AWS_CONTAINER_AUTHORIZATION_TOKEN": self.token,
               "PYTHONPATH": f"{REPO / 'components' / 'uploader'}{os.pathsep}{REPO}",
               "VQI_WORK_DIR": str(self.work), "VQI_KERNEL_ROOT": str(self.kernel)}
        log = open(self.log_path, "a", encoding="utf-8")
        self.proc = subprocess.Popen([*(prefix or []), sys.executable, "-u", "-m", "vqi_uploader"],
                                     env=env,
                                     stdout=log, stderr=subprocess.STDOUT, cwd=str(self.tmp))
        log.close()
        self.wait(lambda: self.ipc.component_state(UPLOADER) == "RUNNING", 30, "uploader RUNNING")

    def stop_uploader(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def connect_peer(self) -> None:
        for key, value in self.ipc.ipc_env(PEER).items():
            self.monkeypatch.setenv(key, value)
        self.peer = IpcClient()
        self.peer.subscribe_json("vqi/archived", self._on_archived)
        self.peer.subscribe_json("vqi/metrics", lambda m, _t: self.metrics.append(m))

    def _on_archived(self, message: Any, topic: str) -> None:
        with self._lock:
            self.archived.setdefault(message["image_id"], []).append(message)

    def close(self) -> None:
        self.stop_uploader(signal.SIGKILL)
        if self.peer is not None:
            self.peer.close()
        self.ipc.stop()
        self.stop_sm()

    # -- acting as Inference / ImageSource -----------------------------------------------------
    def image(self, image_id: str) -> str:
        path = self.inbox / f"{image_id}.jpg"
        path.write_bytes(b"\xff\xd8\xff" + image_id.encode() * 50)
        return str(path)

    def publish(self, result: Dict[str, Any]) -> None:
        """Publish as Inference does (built with the SDK's own model classes)."""
        from awsiot.greengrasscoreipc import model

        assert self.peer is not None
        message = model.PublishMessage(json_message=model.JsonMessage(message=result))
        self.peer._client.publish_to_topic(topic="vqi/results", publish_message=message)

    def publish_disagreement(self, message: Dict[str, Any]) -> None:
        assert self.peer is not None
        self.peer.publish_json("vqi/challenger", message)

    def publish_feedback(self, message: Dict[str, Any]) -> None:
        assert self.peer is not None
        self.peer.publish_json("vqi/feedback", message)

    def confirmed(self) -> Dict[str, List[Dict[str, Any]]]:
        with self._lock:
            return {k: list(v) for k, v in self.archived.items()}

    def redeliver_until_confirmed(self, results: List[Dict[str, Any]], timeout: float,
                                  every: float = 2.0) -> None:
        """What ImageSource does: re-publish each unconfirmed result until confirmed."""
        deadline = time.monotonic() + timeout
        while True:
            waiting = [r for r in results if r["image_id"] not in self.confirmed()]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(waiting)} results never confirmed; log:\n"
                                     + self.log_tail())
            for result in waiting:
                self.publish(result)
            ids = [r["image_id"] for r in waiting]
            self.wait(lambda ids=ids: all(i in self.confirmed() for i in ids), every, None)

    # -- observing the "cloud" ---------------------------------------------------------------
    def kinesis_records(self) -> List[Dict[str, Any]]:
        """Results as exported to the (local) Kinesis stream."""
        path = self.sm_root / "kinesis.jsonl"
        if not path.exists():
            return []
        return [json.loads(json.loads(line)["dataUtf8"])
                for line in path.read_text().splitlines() if line.strip()]

    def kinesis_ids(self) -> List[str]:
        return [r["image_id"] for r in self.kinesis_records()]

    def s3_keys(self) -> List[str]:
        root = self.sm_root / "s3" / BUCKET
        if not root.exists():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if p.is_file() and not p.name.endswith(".part"))

    def s3_read(self, key: str) -> bytes:
        return (self.sm_root / "s3" / BUCKET / key).read_bytes()

    def staged(self) -> List[str]:
        """Files in staging; os.walk skips folders the uploader removes while it looks."""
        root = self.work / "staging"
        return sorted(os.path.relpath(os.path.join(d, f), root)
                      for d, _, files in os.walk(root) for f in files)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def wait(self, predicate: Callable[[], bool], timeout: float, what: Optional[str]) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"uploader exited {self.proc.returncode}:\n"
                                     + self.log_tail())
            time.sleep(0.05)
        if what is not None:
            raise AssertionError(f"timed out waiting for {what}; uploader log:\n"
                                 + self.log_tail())
        return False
