"""Local Stream Manager speaking the `stream-manager` SDK's own protocol (development only)."""

from __future__ import annotations

from .server import OFFLINE_FLAG, StreamManagerServer

__all__ = ["OFFLINE_FLAG", "StreamManagerServer"]
