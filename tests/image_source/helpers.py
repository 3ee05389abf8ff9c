"""Helpers for the image source tests: real folders, real files, the real component."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from vqi_image_source.layout import Layout
from vqi_image_source.settings import Settings, parse

ROOT = Path(__file__).resolve().parents[2]
COMPONENT_DIR = ROOT / "components" / "image-source"


def jpeg_bytes(n: int = 2000, seed: int = 0) -> bytes:
    """A JPEG-shaped file: SOI + APP0 marker, distinct filler, EOI trailer."""
    unit = f"{seed}:".encode()
    body = (unit * (n // len(unit) + 1))[:n]
    return b"\xff\xd8\xff\xe0" + body + b"\xff\xd9"


def png_bytes(n: int = 100) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\0" * n + b"\0\0\0\0IEND\xaeB`\x82"


def write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".part")
    tmp.write_bytes(data)
    os.rename(tmp, path)  # as a careful camera would: appears complete
    return path


def make_settings(**overrides: Any) -> Settings:
    raw: Dict[str, Any] = {"StabilitySeconds": 0.5, "MetricsIntervalSeconds": 3600}
    raw.update(overrides)
    return parse(raw)


def make_layout(work: Path, settings: Optional[Settings] = None) -> Layout:
    layout = Layout.resolve(settings or make_settings(), {"VQI_WORK_DIR": str(work)})
    layout.prepare()
    return layout


class Collector:
    """Stands in for IPC publish in core tests: records (topic, message)."""

    def __init__(self) -> None:
        self.messages: List[Any] = []

    def __call__(self, topic: str, message: Dict[str, Any]) -> None:
        self.messages.append((topic, message))

    def events(self, topic: str = "vqi/images") -> List[Dict[str, Any]]:
        return [m for t, m in self.messages if t == topic]


def result_for(event: Dict[str, Any], verdict: str = "OK", error: Optional[str] = None
               ) -> Dict[str, Any]:
    """A completion message as the Uploader publishes it on vqi/archived."""
    return {"schema_version": 1, "image_id": event["image_id"], "path": event["path"],
            "verdict": verdict, "detections": [], "error": error, "time": "2026-01-01T00:00:00Z",
            "archive": {"stream": "vqi-results", "sequence": 1}}
