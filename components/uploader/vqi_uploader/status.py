"""Bookkeeping of S3 export tasks: which staged file waits, succeeded, must retry, or failed.

Stream Manager reports each task on the status stream. Success deletes the staged file (and its
image folder once empty); Failure or Canceled schedules a new task with exponential backoff up to a
limit, then keeps the file and logs the final failure (a restart tries such files once more). The
ledger is a journal, so attempts and pending files survive restarts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from stream_manager import EventType, S3ExportTaskDefinition, Status, StatusMessage, Util

from .journal import Journal
from .staging import StagedFile, Staging, file_url, url_path

log = logging.getLogger(__name__)

PENDING = "pending"
RETRY = "retry"
FAILED = "failed"

OUTCOME_EXPORTED = "exported"
OUTCOME_RETRY = "retry_scheduled"
OUTCOME_FAILED = "failed"
OUTCOME_IGNORED = "ignored"


def task_payload(entry: Dict[str, Any]) -> bytes:
    """The S3ExportTaskDefinition message for one staged file, as the S3 task executor reads it."""
    task = S3ExportTaskDefinition(
        input_url=entry["url"], bucket=entry["bucket"], key=entry["key"],
        user_metadata=entry.get("metadata") or None,
    )
    return Util.validate_and_serialize_to_json_bytes(task)


def parse_status(payload: bytes) -> StatusMessage:
    return Util.deserialize_json_bytes_to_obj(payload, StatusMessage)


class ExportTracker:
    def __init__(
        self,
        ledger_path: str,
        staging: Staging,
        retry_limit: int,
        retry_base_s: float,
        retry_max_s: float,
        clock: Callable[[], float] = time.time,
        sync: bool = True,
    ) -> None:
        self.staging = staging
        self.retry_limit = retry_limit
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.clock = clock
        self._lock = threading.Lock()
        self._journal = Journal(ledger_path, sync)
        self.entries: Dict[str, Dict[str, Any]] = {}
        for record in self._journal.load():
            url = record.get("url")
            if not isinstance(url, str):
                continue
            if record.get("state") in (PENDING, RETRY, FAILED):
                self.entries[url] = record
            else:
                self.entries.pop(url, None)
        self._compact()

    # -- changes -------------------------------------------------------------------------------
    def _put(self, *entries: Dict[str, Any]) -> None:
        for entry in entries:
            self.entries[entry["url"]] = entry
        self._journal.append(*entries)

    def _drop(self, url: str) -> None:
        if self.entries.pop(url, None) is not None:
            self._journal.append({"url": url, "state": "done"})
        if self._journal.lines > 2 * len(self.entries) + 1000:
            self._compact()

    def _compact(self) -> None:
        self._journal.rewrite(list(self.entries.values()))

    @staticmethod
    def new_entries(
        files: List[StagedFile], bucket: str, image_id: str, metadata: Dict[str, str]
    ) -> List[Dict[str, Any]]:
        """Ledger entries for staged files (not yet recorded); task_payload() validates them."""
        return [
            {"url": file_url(staged.path), "bucket": bucket, "key": staged.key,
             "image_id": image_id, "metadata": metadata, "attempts": 0, "state": PENDING,
             "retry_at": 0.0}
            for staged in files
        ]

    def record(self, entries: List[Dict[str, Any]]) -> None:
        """Remember entries before their tasks reach Stream Manager (statuses may follow fast)."""
        with self._lock:
            self._put(*entries)

    def submitted(
        self, files: List[StagedFile], bucket: str, image_id: str, metadata: Dict[str, str]
    ) -> List[Dict[str, Any]]:
        entries = self.new_entries(files, bucket, image_id, metadata)
        self.record(entries)
        return entries

    def retry_failed_again(self) -> int:
        """Give files that failed for good one more round (called at start)."""
        with self._lock:
            again = [e for e in self.entries.values() if e["state"] == FAILED]
            if again:
                self._put(*({**e, "state": RETRY, "attempts": 0, "retry_at": 0.0} for e in again))
        return len(again)

    def requeue_pending(self) -> int:
        """Resubmit every pending task now: the stream that held them was created anew."""
        with self._lock:
            pending = [e for e in self.entries.values() if e["state"] == PENDING]
            if pending:
                self._put(*({**e, "state": RETRY, "retry_at": 0.0} for e in pending))
        return len(pending)

    def due(self) -> List[Dict[str, Any]]:
        now = self.clock()
        with self._lock:
            return [
                dict(e) for e in self.entries.values()
                if e["state"] == RETRY and e["retry_at"] <= now
            ]

    def resubmitted(self, url: str) -> None:
        with self._lock:
            entry = self.entries.get(url)
            if entry is not None and entry["state"] == RETRY:
                self._put({**entry, "state": PENDING})

    def forget_missing(self, url: str) -> None:
        with self._lock:
            self._drop(url)

    # -- status messages -----------------------------------------------------------------------
    def on_status(self, message: StatusMessage) -> str:
        if message.event_type != EventType.S3Task or message.status_context is None:
            return OUTCOME_IGNORED
        task = message.status_context.s3_export_task_definition
        if task is None or not task.input_url:
            return OUTCOME_IGNORED
        path = url_path(task.input_url)
        if not path or not self.staging.owns(path):
            return OUTCOME_IGNORED  # another component's export
        if message.status == Status.Success:
            with self._lock:
                self.staging.remove(path)
                self._drop(task.input_url)
            return OUTCOME_EXPORTED
        if message.status not in (Status.Failure, Status.Canceled):
            return OUTCOME_IGNORED  # InProgress, Warning
        return self._failed(task, message.message or message.status.name)

    def _failed(self, task: S3ExportTaskDefinition, why: str) -> str:
        url, path = task.input_url, url_path(task.input_url)
        with self._lock:
            if not os.path.exists(path):
                # An earlier task for the same file succeeded and removed it.
                self._drop(url)
                return OUTCOME_IGNORED
            entry = self.entries.get(url) or {
                "url": url, "bucket": task.bucket, "key": task.key, "image_id": "",
                "metadata": task.user_metadata or {}, "attempts": 0,
            }
            if entry.get("state") == RETRY:
                return OUTCOME_IGNORED  # a duplicate report; a retry is already scheduled
            attempts = int(entry.get("attempts", 0)) + 1
            if attempts > self.retry_limit:
                self._put({**entry, "attempts": attempts, "state": FAILED, "error": why})
                log.error("export of %s to s3://%s/%s failed for good after %d attempts (%s); "
                          "file kept", path, entry["bucket"], entry["key"], attempts, why)
                return OUTCOME_FAILED
            delay = min(self.retry_max_s, self.retry_base_s * (2 ** (attempts - 1)))
            self._put({**entry, "attempts": attempts, "state": RETRY, "error": why,
                       "retry_at": self.clock() + delay})
            log.warning("export of %s failed (%s); retry %d/%d in %.1fs",
                        path, why, attempts, self.retry_limit, delay)
            return OUTCOME_RETRY

    # -- reporting -----------------------------------------------------------------------------
    def counts(self) -> Dict[str, int]:
        with self._lock:
            out = {PENDING: 0, RETRY: 0, FAILED: 0}
            for entry in self.entries.values():
                out[entry["state"]] = out.get(entry["state"], 0) + 1
            return out

    def get(self, url: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            entry = self.entries.get(url)
            return dict(entry) if entry else None

    def close(self) -> None:
        self._journal.close()
