"""The image source as a real process on the local IPC server, with a stand-in pipeline.

The pipeline is a real SDK client in the test process acting as Inference + Uploader: it records
every image event and (unless paused) answers each with a completion on vqi/archived, as the
Uploader does after archiving.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import yaml

from .helpers import COMPONENT_DIR, ROOT, jpeg_bytes, write_file

NAME = "com.example.vqi.ImageSource"
MARKER = "zz-settled-marker.jpg"  # sorts after every other test image name
PIPELINE = "test.vqi.Pipeline"
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def recipe_defaults() -> Dict[str, Any]:
    recipe = yaml.safe_load((COMPONENT_DIR / "recipe.yaml").read_text())
    return dict(recipe["ComponentConfiguration"]["DefaultConfiguration"])


class Pipeline:
    """Real SDK client subscribed to image events; answers them from a worker thread."""

    def __init__(self, server: Any, answer: bool = True,
                 verdict: Callable[[Dict[str, Any]], str] = lambda e: "OK") -> None:
        import awsiot.greengrasscoreipc as gg
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        server.add_component(PIPELINE, {}, {"aws.greengrass.ipc.pubsub": {"p:1": {
            "operations": ["aws.greengrass#SubscribeToTopic", "aws.greengrass#PublishToTopic"],
            "resources": ["vqi/images", "vqi/archived", "vqi/metrics"]}}})
        env = server.ipc_env(PIPELINE)
        raw = gg.connect(ipc_socket=env["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"],
                         authtoken=env["SVCUID"])
        self.client = GreengrassCoreIPCClientV2(client=raw)
        self.answer = answer
        self.verdict = verdict
        self.events: List[Dict[str, Any]] = []
        self.arrivals: List[float] = []
        self.metrics: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._todo: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        self._worker = threading.Thread(target=self._work, daemon=True)
        self._worker.start()
        self._ops = [
            self.client.subscribe_to_topic(topic="vqi/images", on_stream_event=self._on_event)[1],
            self.client.subscribe_to_topic(topic="vqi/metrics",
                                           on_stream_event=self._on_metrics)[1]]

    def _on_event(self, event: Any) -> None:
        message = event.json_message.message
        with self._lock:
            self.events.append(message)
            self.arrivals.append(time.time())
        self._todo.put(message)

    def _on_metrics(self, event: Any) -> None:
        with self._lock:
            self.metrics.append(event.json_message.message)

    def _work(self) -> None:
        while True:
            message = self._todo.get()
            if message is None:
                return
            if self.answer:
                self.complete(message, self.verdict(message))

    def complete(self, event: Dict[str, Any], verdict: str = "OK") -> None:
        result = {"schema_version": 1, "image_id": event["image_id"], "path": event["path"],
                  "verdict": verdict, "detections": [], "camera_id": event["camera_id"],
                  "error": "decode: not decodable" if verdict == "ERROR" else None,
                  "time": "2026-01-01T00:00:00.000Z",
                  "archive": {"stream": "vqi-results", "sequence": len(self.events)}}
        try:
            from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

            self.client.publish_to_topic(
                topic="vqi/archived",
                publish_message=PublishMessage(json_message=JsonMessage(message=result)))
        except Exception:
            pass  # the component may be down (kill tests); it re-publishes after restart

    def snapshot(self) -> List[Dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def close(self) -> None:
        self._todo.put(None)
        for op in self._ops:
            try:
                op.close()
            except Exception:
                pass
        self.client.close()


class Component:
    """com.example.vqi.ImageSource as a subprocess, started the way its recipe runs it."""

    def __init__(self, server: Any, work: Path, overrides: Optional[Dict[str, Any]] = None,
                 log: Optional[Path] = None) -> None:
        self.server = server
        self.work = work
        self.configuration = recipe_defaults()
        access = self.configuration.pop("accessControl")
        self.configuration.update(overrides or {})
        self.configuration["accessControl"] = access
        self.access = access
        self.log = log or (work.parent / "component.log")
        self.proc: Optional[subprocess.Popen] = None
        self.svcuid = ""

    def start(self, prefix: Optional[List[str]] = None) -> "Component":
        """Start the process (`prefix`: a wrapper command, e.g. strace)."""
        if not self.svcuid:
            self.svcuid = self.server.add_component(NAME, self.configuration, self.access)
        env = dict(os.environ)
        env.update(self.server.ipc_env(NAME))
        env.update({"PYTHONPATH": f"{COMPONENT_DIR}:{ROOT}", "VQI_WORK_DIR": str(self.work),
                    "PYTHONUNBUFFERED": "1"})
        self.work.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([*(prefix or []), PYTHON, "-m", "vqi_image_source"],
                                         env=env,
                                         stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT))
        return self

    def wait_running(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.server.component_state(NAME) != "RUNNING":
            assert self.proc is not None and self.proc.poll() is None, self.tail()
            assert time.monotonic() < deadline, "component never reported RUNNING\n" + self.tail()
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


class Rig:
    """IPC server + component + pipeline, cleaned up on exit."""

    def __init__(self, overrides: Optional[Dict[str, Any]] = None, answer: bool = True) -> None:
        from localgg.ipc_server import IpcServer

        self.tmp = Path(tempfile.mkdtemp(prefix="vqiis"))
        self.server = IpcServer(self.tmp / "ipc.sock", self.tmp / "cloud.jsonl")
        self.server.start()
        self.work = self.tmp / "work"
        self.inbox = self.work / "inbox"
        self.pipeline = Pipeline(self.server, answer=answer)
        self.component = Component(self.server, self.work, overrides)

    def folder(self, name: str) -> List[Path]:
        root = self.work / name
        return sorted(p for p in root.rglob("*") if p.is_symlink() or not p.is_dir()) \
            if root.exists() else []

    def images(self, name: str) -> List[Path]:
        return [p for p in self.folder(name) if not p.name.endswith((".json",))]

    def settle(self, timeout: float = 60) -> None:
        """A positive marker for "nothing more arrived": drop MARKER and wait until it is done,
        so every earlier image has had its events and acknowledgements handled first."""
        write_file(self.inbox / MARKER, jpeg_bytes(300, seed=424242))
        self.wait_for(lambda: any(p.name.endswith("__" + MARKER) for p in self.images("done"))
                      and any(e["path"].endswith(MARKER) for e in self.pipeline.snapshot()),
                      timeout, "the marker image in done/")

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n" + self.component.tail())
            time.sleep(0.05)

    def close(self) -> None:
        self.component.stop()
        self.pipeline.close()
        self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Rig":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
