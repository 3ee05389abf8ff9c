"""Reaction to S3 export status messages (real SDK StatusMessage JSON)."""

from __future__ import annotations

import os

import pytest
from stream_manager import (
    EventType,
    S3ExportTaskDefinition,
    Status,
    StatusContext,
    StatusMessage,
    Util,
)

from vqi_uploader.staging import Staging, file_url
from vqi_uploader.status import (
    FAILED,
    OUTCOME_EXPORTED,
    OUTCOME_FAILED,
    OUTCOME_IGNORED,
    OUTCOME_RETRY,
    PENDING,
    RETRY,
    ExportTracker,
    parse_status,
    task_payload,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path):
    src = tmp_path / "img.jpg"
    src.write_bytes(b"jpeg")
    staging = Staging(str(tmp_path / "staging"))
    files = staging.stage("img", str(src), "k/img.jpg", "", "k/img.txt", "{}", "k/img.json")
    clock = Clock()
    tracker = ExportTracker(str(tmp_path / "exports.jsonl"), staging, retry_limit=2,
                            retry_base_s=10, retry_max_s=15, clock=clock)
    tracker.submitted(files, "bucket", "img", {"vqi-image-id": "img"})
    return tmp_path, staging, files, tracker, clock


def status(path: str, outcome: Status, key: str = "k/img.jpg") -> StatusMessage:
    """A status message as Stream Manager writes it, through its JSON form."""
    task = S3ExportTaskDefinition(input_url=file_url(path), bucket="bucket", key=key)
    message = StatusMessage(event_type=EventType.S3Task, status=outcome,
                            status_context=StatusContext(s3_export_task_definition=task),
                            message="boom" if outcome == Status.Failure else None)
    return parse_status(Util.validate_and_serialize_to_json_bytes(message))


def test_task_payload_is_a_valid_sdk_task_with_a_file_url(setup):
    _, _, files, tracker, _ = setup
    task = Util.deserialize_json_bytes_to_obj(
        task_payload(tracker.get(file_url(files[0].path))), S3ExportTaskDefinition)
    assert task.input_url == file_url(files[0].path) and task.key == "k/img.jpg"
    assert task.bucket == "bucket" and task.user_metadata == {"vqi-image-id": "img"}


def test_success_deletes_the_staged_file_and_forgets_it(setup):
    tmp, staging, files, tracker, _ = setup
    assert tracker.on_status(status(files[0].path, Status.Success)) == OUTCOME_EXPORTED
    assert not os.path.exists(files[0].path)
    assert tracker.counts()[PENDING] == 2
    for f in files[1:]:
        tracker.on_status(status(f.path, Status.Success))
    assert staging.files() == [] and not os.path.exists(staging.folder("img"))
    tracker.close()
    reopened = ExportTracker(str(tmp / "exports.jsonl"), staging, 2, 10, 15)
    assert reopened.entries == {}


def test_failure_schedules_retries_with_backoff_then_keeps_the_file(setup):
    tmp, staging, files, tracker, clock = setup
    path, url = files[0].path, file_url(files[0].path)
    assert tracker.on_status(status(path, Status.Failure)) == OUTCOME_RETRY
    assert tracker.due() == []
    clock.now += 10
    assert [e["url"] for e in tracker.due()] == [url]
    tracker.resubmitted(url)
    assert tracker.get(url)["state"] == PENDING
    assert tracker.on_status(status(path, Status.Canceled)) == OUTCOME_RETRY
    clock.now += 14.9
    assert tracker.due() == []  # second delay doubles to 20 s, capped at 15 s
    clock.now += 0.1
    assert len(tracker.due()) == 1
    tracker.resubmitted(url)
    assert tracker.on_status(status(path, Status.Failure)) == OUTCOME_FAILED
    assert tracker.get(url)["state"] == FAILED and os.path.exists(path)
    assert tracker.due() == []


def test_final_failures_survive_a_restart_and_get_one_more_round(setup):
    tmp, staging, files, tracker, _ = setup
    tracker.retry_limit = 0
    assert tracker.on_status(status(files[0].path, Status.Failure)) == OUTCOME_FAILED
    tracker.close()
    reopened = ExportTracker(str(tmp / "exports.jsonl"), staging, 2, 10, 15)
    assert reopened.counts() == {PENDING: 2, RETRY: 0, FAILED: 1}
    assert reopened.retry_failed_again() == 1
    entry = reopened.get(file_url(files[0].path))
    assert entry["state"] == RETRY and entry["attempts"] == 0
    assert len(reopened.due()) == 1


def test_a_second_report_while_a_retry_is_scheduled_is_ignored(setup):
    _, _, files, tracker, _ = setup
    tracker.on_status(status(files[0].path, Status.Failure))
    assert tracker.on_status(status(files[0].path, Status.Failure)) == OUTCOME_IGNORED
    assert tracker.get(file_url(files[0].path))["attempts"] == 1


def test_failure_of_a_file_already_exported_by_an_earlier_task_is_ignored(setup):
    _, _, files, tracker, _ = setup
    tracker.on_status(status(files[0].path, Status.Success))
    assert tracker.on_status(status(files[0].path, Status.Failure)) == OUTCOME_IGNORED
    assert tracker.get(file_url(files[0].path)) is None


def test_in_progress_and_foreign_files_are_ignored(setup, tmp_path):
    _, _, files, tracker, _ = setup
    foreign = tmp_path / "other.jpg"
    foreign.write_bytes(b"x")
    assert tracker.on_status(status(files[0].path, Status.InProgress)) == OUTCOME_IGNORED
    assert tracker.on_status(status(str(foreign), Status.Success)) == OUTCOME_IGNORED
    assert foreign.exists() and os.path.exists(files[0].path)


def test_pending_tasks_are_requeued_when_their_stream_was_lost(setup):
    _, _, files, tracker, _ = setup
    tracker.on_status(status(files[0].path, Status.Success))
    assert tracker.requeue_pending() == 2
    assert sorted(e["key"] for e in tracker.due()) == ["k/img.json", "k/img.txt"]
