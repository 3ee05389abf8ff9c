"""The Dashboard as a real process (`python -m vqi_dashboard`) on the local IPC server, with its
recipe's configuration and accessControl, and HTTP helpers that speak to it as a browser or an
attacker would. A test component acting as Inference (and the alerting components) publishes."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from shared.messages import Detection, InspectionResult, ModelInfo

REPO = Path(__file__).resolve().parents[2]
COMPONENT = REPO / "components" / "dashboard"
DASHBOARD = "com.example.vqi.Dashboard"
PUBLISHER = "test.vqi.Line"
THING = "test-thing"
ALLOW_ALL = {"aws.greengrass.ipc.pubsub": {"line:1": {"operations": ["*"], "resources": ["*"]}}}


def recipe() -> Dict[str, Any]:
    return yaml.safe_load((COMPONENT / "recipe.yaml").read_text())


def default_configuration() -> Dict[str, Any]:
    return dict(recipe()["ComponentConfiguration"]["DefaultConfiguration"])


def result(image_id: str, path: str, verdict: str = "OK", camera: str = "cam-1",
           time_iso: Optional[str] = None, boxes: int = 0) -> Dict[str, Any]:
    """An InspectionResult as Inference publishes it."""
    detections = [Detection(class_id=0, class_name="scratch", score=0.9 - 0.1 * i,
                            box=[10.0 + i, 10.0, 50.0 + i, 30.0],
                            box_norm=[0.1, 0.1 + 0.1 * i, 0.4, 0.15 + 0.1 * i])
                  for i in range(boxes)]
    extra = {"time": time_iso} if time_iso else {}
    return InspectionResult(image_id=image_id, path=path, verdict=verdict, detections=detections,
                            model=ModelInfo("vqi-test", "1.0.0", "0" * 64),
                            timings_ms={"total": 12.5}, image_width=100, image_height=100,
                            camera_id=camera, thing_name=THING, **extra).to_dict()


class Rig:
    """IpcServer + the Dashboard process + a publisher client; HTTP to the Dashboard."""

    def __init__(self, tmp: Path, **config: Any) -> None:
        from localgg.ipc_server import IpcServer
        from tests.inference.localrt import env

        self.tmp = tmp
        self.ipc_dir = Path(tempfile.mkdtemp(prefix="vqidash"))  # short socket path
        self.server = IpcServer(self.ipc_dir / "ipc.sock", self.ipc_dir / "cloud.jsonl", THING)
        self.server.start()
        self.work = tmp / "work"
        self.work.mkdir()
        self.state = tmp / "images"  # ImageSource's StateDir
        for folder in ("processing", "done", "failed"):
            (self.state / folder).mkdir(parents=True)
        configuration = {**default_configuration(), "Port": 0,
                         "ImageDirs": [str(self.state)], **config}
        acl = configuration.pop("accessControl")
        self.server.add_component(DASHBOARD, configuration, acl)
        self.server.add_component(PUBLISHER, {}, ALLOW_ALL)
        from shared.ipc import IpcClient

        with env(self.server.ipc_env(PUBLISHER)):
            self.line = IpcClient()
        self.received: List[Tuple[str, Any]] = []
        self.proc: Optional[subprocess.Popen] = None
        self.log = tmp / "dashboard.log"

    def start(self, timeout: float = 30.0) -> "Rig":
        environ = {**os.environ, **self.server.ipc_env(DASHBOARD), "VQI_WORK_DIR": str(self.work),
                   "PYTHONPATH": f"{COMPONENT}:{REPO}", "AWS_IOT_THING_NAME": THING}
        url_file = self.work / "dashboard.url"
        url_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-u", "-m", "vqi_dashboard"], env=environ,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not url_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the dashboard did not start (exit {self.proc.poll()}):\n"
                                     + self.log.read_text()[-3000:])
            time.sleep(0.05)
        self.url = url_file.read_text().strip()
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))
        self._wait_subscribed()
        return self

    def _wait_subscribed(self, timeout: float = 15.0) -> None:
        """Until the process reported RUNNING (its subscriptions are made by then)."""
        deadline = time.monotonic() + timeout
        while self.server.component_state(DASHBOARD) != "RUNNING":
            if time.monotonic() > deadline:
                raise AssertionError("the dashboard never reported RUNNING:\n"
                                     + self.log.read_text()[-3000:])
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.terminate()
        try:
            return self.proc.wait(20)
        finally:
            self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.line.close()
        self.server.stop()

    # -- publishing as the line would --------------------------------------------------------
    def publish(self, topic: str, message: Any) -> None:
        self.line.publish_json(topic, message)

    def image(self, name: str, where: str = "processing", data: Optional[bytes] = None) -> Path:
        """A JPEG where ImageSource keeps it (`processing`, or `done/<UTC day>`)."""
        if where == "done":
            where = f"done/{time.strftime('%Y-%m-%d', time.gmtime())}"
        folder = self.state / where
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        if data is None:
            import cv2
            import numpy as np

            ok, encoded = cv2.imencode(".jpg", np.full((100, 100, 3), 90, np.uint8))
            data = encoded.tobytes()
        path.write_bytes(data)
        return path

    def wait_rows(self, count: int, timeout: float = 10.0, **query: str) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.get_json("/api/results?" + "&".join(
                f"{k}={v}" for k, v in {"page_size": "200", **query}.items()))
            if status == 200 and body["total"] >= count:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} results never arrived: {body}")
            time.sleep(0.05)

    # -- HTTP ----------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers={
                "Host": f"127.0.0.1:{self.port}", **(headers or {})})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, \
                response.read()
        finally:
            conn.close()

    def get_json(self, path: str, headers: Optional[Dict[str, str]] = None
                 ) -> Tuple[int, Dict[str, Any]]:
        status, _, data = self.request("GET", path, headers=headers)
        return status, json.loads(data)

    def csrf(self, headers: Optional[Dict[str, str]] = None) -> str:
        status, body = self.get_json("/api/session", headers)
        assert status == 200, body
        return body["csrf"]

    def post_feedback(self, body: Any, headers: Optional[Dict[str, str]] = None,
                      csrf: Optional[str] = None) -> Tuple[int, Dict[str, Any]]:
        token = self.csrf(headers) if csrf is None else csrf
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, _, answer = self.request("POST", "/api/feedback", data, {
            "Content-Type": "application/json", "X-CSRF-Token": token,
            "Origin": f"http://127.0.0.1:{self.port}", **(headers or {})})
        return status, json.loads(answer)

    def serving(self) -> bool:
        """The server still answers a plain request."""
        status, _, _ = self.request("GET", "/api/summary")
        return status == 200
