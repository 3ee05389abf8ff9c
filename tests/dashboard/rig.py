"""The Dashboard as a real process on the local IPC server (vqitools.dashrun), with HTTP
helpers that speak to it as a browser or an attacker would."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from vqitools.dashrun import DashboardProcess


class Rig(DashboardProcess):
    """DashboardProcess + images where ImageSource keeps them + HTTP to the Dashboard."""

    def __init__(self, tmp: Path, **config: Any) -> None:
        super().__init__(tmp, **config)
        self.tmp = tmp

    def start(self, timeout: float = 30.0) -> "Rig":
        super().start(timeout)
        return self

    # -- the line's files --------------------------------------------------------------------
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
