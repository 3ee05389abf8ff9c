"""The Dashboard as a real process (`python -m vqi_dashboard`) on the local IPC server, with its
recipe's configuration and accessControl, and a publisher component that acts as the rest of the
line; for the Dashboard's tests and its benchmark, which need more results per second than the
line itself makes here."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import yaml

from shared.messages import Detection, InspectionResult, ModelInfo
from vqitools.build import REPO_ROOT

COMPONENT = REPO_ROOT / "components" / "dashboard"
DASHBOARD = "com.example.vqi.Dashboard"
PUBLISHER = "vqi.local.Line"
THING = "local-thing"
ALLOW_ALL = {"aws.greengrass.ipc.pubsub": {"line:1": {"operations": ["*"], "resources": ["*"]}}}


def default_configuration() -> Dict[str, Any]:
    recipe = yaml.safe_load((COMPONENT / "recipe.yaml").read_text())
    return dict(recipe["ComponentConfiguration"]["DefaultConfiguration"])


def result(image_id: str, path: str, verdict: str = "OK", camera: str = "cam-1",
           time_iso: Optional[str] = None, boxes: int = 0) -> Dict[str, Any]:
    """An InspectionResult as Inference publishes it (time: now unless given)."""
    detections = [Detection(class_id=0, class_name="scratch", score=0.9 - 0.1 * i,
                            box=[10.0 + i, 10.0, 50.0 + i, 30.0],
                            box_norm=[0.1, 0.1 + 0.1 * i, 0.4, 0.15 + 0.1 * i])
                  for i in range(boxes)]
    extra = {"time": time_iso} if time_iso else {}
    return InspectionResult(image_id=image_id, path=path, verdict=verdict, detections=detections,
                            model=ModelInfo("vqi-test", "1.0.0", "0" * 64),
                            timings_ms={"total": 12.5}, image_width=100, image_height=100,
                            camera_id=camera, thing_name=THING, **extra).to_dict()


class DashboardProcess:
    """IpcServer + the Dashboard process + a publisher client (`line`)."""

    def __init__(self, folder: Path, **config: Any) -> None:
        from localgg.ipc_server import IpcServer

        self.folder = folder
        self.ipc_dir = Path(tempfile.mkdtemp(prefix="vqidash"))  # short socket path
        self.server = IpcServer(self.ipc_dir / "ipc.sock", self.ipc_dir / "cloud.jsonl", THING)
        self.server.start()
        self.work = folder / "work"
        self.work.mkdir(exist_ok=True)
        self.state = folder / "images"  # ImageSource's StateDir
        for sub in ("processing", "done", "failed"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        configuration = {**default_configuration(), "Port": 0,
                         "ImageDirs": [str(self.state)], **config}
        acl = configuration.pop("accessControl")
        self.server.add_component(DASHBOARD, configuration, acl)
        self.server.add_component(PUBLISHER, {}, ALLOW_ALL)
        self.line = self._client(PUBLISHER)
        self.proc: Optional[subprocess.Popen] = None
        self.log = folder / "dashboard.log"
        self.url = ""
        self.port = 0

    def _client(self, name: str) -> Any:
        from shared.ipc import IpcClient

        saved = dict(os.environ)
        os.environ.update(self.server.ipc_env(name))
        try:
            return IpcClient()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def start(self, timeout: float = 30.0) -> "DashboardProcess":
        environ = {**os.environ, **self.server.ipc_env(DASHBOARD), "VQI_WORK_DIR": str(self.work),
                   "PYTHONPATH": f"{COMPONENT}:{REPO_ROOT}", "AWS_IOT_THING_NAME": THING}
        url_file = self.work / "dashboard.url"
        url_file.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-u", "-m", "vqi_dashboard"],
                                         env=environ, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while self.server.component_state(DASHBOARD) != "RUNNING" or not url_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the dashboard did not start (exit {self.proc.poll()}):\n"
                                     + self.log.read_text()[-3000:])
            time.sleep(0.05)
        self.url = url_file.read_text().strip()
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))
        return self

    def stop(self) -> int:
        """SIGTERM, as the nucleus stops a component; its exit code."""
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
        shutil.rmtree(self.ipc_dir, ignore_errors=True)

    def publish(self, topic: str, message: Any) -> None:
        self.line.publish_json(topic, message)
