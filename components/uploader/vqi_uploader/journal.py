"""Small append-only JSON-lines files for state that must survive a crash or restart.

Appending one line per change keeps each update cheap and durable (flush + fsync); a torn last line
from a crash is skipped on load. Owners compact the file when it grows past what they still need.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional

from shared.atomic import write_atomic

log = logging.getLogger(__name__)


class Journal:
    """One JSON object per line; `load` returns every readable record in order."""

    def __init__(self, path: str, sync: bool = True) -> None:
        self.path = path
        self.sync = sync
        self.lines = 0
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._fh: Optional[Any] = None

    def load(self) -> List[Dict[str, Any]]:
        records: List[Dict[str, Any]] = []
        if not os.path.exists(self.path):
            return records
        with open(self.path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    log.warning("%s:%d unreadable record skipped", self.path, number)
                    continue
                if isinstance(record, dict):
                    records.append(record)
        self.lines = len(records)
        return records

    def append(self, *records: Dict[str, Any]) -> None:
        """Append records with one flush (and one fsync)."""
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        self._fh.flush()
        if self.sync:
            os.fsync(self._fh.fileno())
        self.lines += len(records)

    def rewrite(self, records: Iterable[Dict[str, Any]]) -> None:
        self.close()
        items = list(records)
        write_atomic(self.path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in items))
        self.lines = len(items)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class HandledIds:
    """Image ids already sent, with their archive record, newest `limit` kept (idempotence)."""

    def __init__(self, path: str, limit: int, sync: bool = True) -> None:
        self.limit = limit
        self._journal = Journal(path, sync)
        self._ids: "OrderedDict[str, Dict[str, Any]]" = OrderedDict()
        for record in self._journal.load():
            image_id = record.get("id")
            if isinstance(image_id, str):
                self._ids.pop(image_id, None)
                self._ids[image_id] = record.get("archive") or {}
        self._trim()

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, image_id: str) -> Optional[Dict[str, Any]]:
        return self._ids.get(image_id)

    def add(self, image_id: str, archive: Dict[str, Any]) -> None:
        self._ids.pop(image_id, None)
        self._ids[image_id] = archive
        self._journal.append({"id": image_id, "archive": archive})
        self._trim()

    def _trim(self) -> None:
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        if self._journal.lines > 2 * self.limit:
            self._journal.rewrite({"id": k, "archive": v} for k, v in self._ids.items())

    def close(self) -> None:
        self._journal.close()


class OffsetFile:
    """The next sequence number to read from a stream, persisted atomically."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

    def load(self) -> int:
        try:
            with open(self.path, encoding="utf-8") as fh:
                return max(0, int(fh.read().strip() or 0))
        except (OSError, ValueError):
            return 0

    def save(self, value: int) -> None:
        write_atomic(self.path, f"{int(value)}\n")
