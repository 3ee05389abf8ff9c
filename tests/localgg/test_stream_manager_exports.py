"""Exports of the local Stream Manager: S3 export tasks with status streams, Kinesis records,
and offline buffering."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from stream_manager import (
    EventType,
    ExportDefinition,
    KinesisConfig,
    Persistence,
    Status,
    StatusLevel,
    UpdateNotAllowedException,
)

from localgg.stream_manager import OFFLINE_FLAG, StreamManagerServer

from .sm_fixtures import (  # noqa: F401  (pytest fixtures are used by name)
    all_statuses,
    connect,
    kinesis_stream,
    plain_stream,
    read_lines,
    read_statuses,
    s3_stream,
    s3_task,
    sm_client_fixture,
    sm_server_fixture,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


def make_file(folder: Path, name: str, size: int = 1000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(bytes(range(256)) * (size // 256) + b"!" * (size % 256))
    return path


def test_s3_task_copies_the_file_into_the_bucket_and_reports_success(sm_server, sm_client,
                                                                      tmp_path):
    sm_client.create_message_stream(plain_stream("status"))
    sm_client.create_message_stream(s3_stream("uploads", "status"))
    src = make_file(tmp_path / "staging", "img 1.jpg", 50_000)
    seq = sm_client.append_message("uploads", s3_task(src, "2026/01/02/thing/img-1.jpg"))

    in_progress, success = read_statuses(sm_client, "status", 2)
    assert [in_progress.status, success.status] == [Status.InProgress, Status.Success]
    assert success.event_type == EventType.S3Task
    assert success.status_level == StatusLevel.INFO
    ctx = success.status_context
    assert (ctx.stream_name, ctx.sequence_number, ctx.export_identifier) == ("uploads", seq,
                                                                             "to-s3")
    assert ctx.s3_export_task_definition.input_url == src.as_uri()
    assert ctx.s3_export_task_definition.key == "2026/01/02/thing/img-1.jpg"
    obj = sm_server.bucket_root / "review-bucket" / "2026/01/02/thing/img-1.jpg"
    assert obj.read_bytes() == src.read_bytes()
    assert not [p for p in obj.parent.iterdir() if p.name.startswith(".")]  # no temp files


def test_missing_input_file_gives_a_failure_status_and_the_stream_goes_on(sm_server, sm_client,
                                                                           tmp_path):
    sm_client.create_message_stream(plain_stream("status"))
    sm_client.create_message_stream(s3_stream("uploads", "status"))
    missing = tmp_path / "gone.jpg"
    present = make_file(tmp_path, "here.jpg")
    sm_client.append_message("uploads", s3_task(missing, "a/gone.jpg"))
    sm_client.append_message("uploads", s3_task(present, "a/here.jpg"))

    statuses = read_statuses(sm_client, "status", 4)
    final = [s for s in statuses if s.status != Status.InProgress]
    assert [(s.status, s.status_context.sequence_number) for s in final] == [
        (Status.Failure, 0), (Status.Success, 1)]
    assert final[0].status_level == StatusLevel.ERROR
    assert str(missing) in final[0].message and "does not exist" in final[0].message
    assert (sm_server.bucket_root / "review-bucket/a/here.jpg").exists()
    assert not (sm_server.bucket_root / "review-bucket/a/gone.jpg").exists()


def test_status_level_error_reports_only_failures(sm_client, tmp_path):
    sm_client.create_message_stream(plain_stream("status"))
    sm_client.create_message_stream(s3_stream("uploads", "status", level=StatusLevel.ERROR))
    sm_client.append_message("uploads", s3_task(make_file(tmp_path, "ok.jpg"), "ok.jpg"))
    sm_client.append_message("uploads", s3_task(tmp_path / "missing.jpg", "missing.jpg"))
    (failure,) = read_statuses(sm_client, "status", 1)
    assert failure.status == Status.Failure
    time.sleep(0.3)
    assert len(all_statuses(sm_client, "status")) == 1


def test_key_timestamp_placeholders_and_user_metadata(sm_server, sm_client, tmp_path):
    sm_client.create_message_stream(plain_stream("status"))
    sm_client.create_message_stream(s3_stream("uploads", "status"))
    src = make_file(tmp_path, "x.jpg")
    sm_client.append_message("uploads", s3_task(src, "p/!{timestamp:yyyy/MM/dd}/x.jpg",
                                                metadata={"verdict": "DEFECT"}))
    before = datetime.now(timezone.utc)
    success = read_statuses(sm_client, "status", 2)[1]
    assert success.status == Status.Success
    day = before.strftime("%Y/%m/%d")
    assert (sm_server.bucket_root / "review-bucket/p" / day / "x.jpg").exists()
    meta = sm_server.bucket_root / ".metadata/review-bucket/p" / day / "x.jpg.json"
    assert json.loads(meta.read_text()) == {"verdict": "DEFECT"}


def test_kinesis_export_records_every_message(sm_server, sm_client):
    sm_client.create_message_stream(kinesis_stream("results", "vqi-results"))
    payloads = [json.dumps({"image_id": f"img-{i}"}).encode() for i in range(5)] + [b"\xff\x00"]
    for p in payloads:
        sm_client.append_message("results", p)
    wait_until(lambda: len(read_lines(sm_server.kinesis_log)) == len(payloads), what="records")
    records = [json.loads(line) for line in read_lines(sm_server.kinesis_log)]
    assert [r["sequenceNumber"] for r in records] == list(range(len(payloads)))
    assert [base64.b64decode(r["dataBase64"]) for r in records] == payloads
    assert records[0]["dataUtf8"] == '{"image_id": "img-0"}'
    assert records[-1]["dataUtf8"] is None
    assert {(r["streamName"], r["kinesisStreamName"]) for r in records} == {
        ("results", "vqi-results")}
    assert all(r["partitionKey"] for r in records)
    status = sm_client.describe_message_stream("results").export_statuses[0]
    assert (status.export_config_identifier, status.last_exported_sequence_number) == (
        "to-kinesis", len(payloads) - 1)
    assert status.exported_messages_count == len(payloads)


def test_kinesis_batch_size_waits_for_a_full_batch(sm_server, sm_client):
    sm_client.create_message_stream(kinesis_stream("results", batch_size=3))
    sm_client.append_message("results", b"1")
    sm_client.append_message("results", b"2")
    time.sleep(0.5)
    assert read_lines(sm_server.kinesis_log) == []
    sm_client.append_message("results", b"3")
    wait_until(lambda: len(read_lines(sm_server.kinesis_log)) == 3, what="a batch of 3")


def test_offline_buffers_everything_and_recovery_exports_it_exactly_once(sm_server, sm_client,
                                                                         tmp_path):
    sm_client.create_message_stream(plain_stream("status"))
    sm_client.create_message_stream(s3_stream("uploads", "status"))
    sm_client.create_message_stream(kinesis_stream("results"))
    sm_server.set_online(False)
    assert (sm_server.root / OFFLINE_FLAG).exists()
    files = [make_file(tmp_path / "staging", f"img-{i}.jpg", 2000 + i) for i in range(5)]
    for i, f in enumerate(files):
        sm_client.append_message("uploads", s3_task(f, f"k/img-{i}.jpg"))
        sm_client.append_message("results", b'{"n": %d}' % i)
    time.sleep(1.0)
    assert all_statuses(sm_client, "status") == []
    assert read_lines(sm_server.kinesis_log) == []
    assert not (sm_server.bucket_root / "review-bucket").exists()

    sm_server.set_online(True)
    successes = [s for s in read_statuses(sm_client, "status", 10) if s.status == Status.Success]
    assert sorted(s.status_context.sequence_number for s in successes) == list(range(5))
    wait_until(lambda: len(read_lines(sm_server.kinesis_log)) == 5, what="Kinesis records")
    time.sleep(0.5)  # anything exported twice would show up by now
    assert len(all_statuses(sm_client, "status")) == 10
    assert [json.loads(r)["sequenceNumber"] for r in read_lines(sm_server.kinesis_log)] == list(
        range(5))
    for i, f in enumerate(files):
        assert (sm_server.bucket_root / f"review-bucket/k/img-{i}.jpg").read_bytes() == (
            f.read_bytes())


def test_offline_flag_file_from_another_process_pauses_and_resumes_exports(sm_server, sm_client):
    sm_client.create_message_stream(kinesis_stream("results"))
    flag = sm_server.root / OFFLINE_FLAG
    flag.touch()  # what `touch ROOT/OFFLINE` in another shell does
    wait_until(lambda: not sm_server.online, timeout_s=3, what="offline")
    sm_client.append_message("results", b"queued")
    time.sleep(0.5)
    assert read_lines(sm_server.kinesis_log) == []
    flag.unlink()
    wait_until(lambda: len(read_lines(sm_server.kinesis_log)) == 1, what="export after online")


def test_deleting_a_stream_cancels_its_pending_tasks(sm_server, sm_client, tmp_path):
    sm_client.create_message_stream(plain_stream("status"))
    sm_client.create_message_stream(s3_stream("uploads", "status"))
    sm_server.set_online(False)
    sm_client.append_message("uploads", s3_task(make_file(tmp_path, "a.jpg"), "a.jpg"))
    sm_client.delete_message_stream("uploads")
    (canceled,) = read_statuses(sm_client, "status", 1)
    assert canceled.status == Status.Canceled
    assert canceled.status_context.s3_export_task_definition.key == "a.jpg"


def test_updating_a_stream_to_add_an_export_exports_what_it_already_holds(sm_server, sm_client):
    sm_client.create_message_stream(plain_stream("results"))
    for i in range(3):
        sm_client.append_message("results", b"r%d" % i)
    sm_client.update_message_stream(plain_stream("results", export_definition=ExportDefinition(
        kinesis=[KinesisConfig(identifier="late", kinesis_stream_name="k")])))
    wait_until(lambda: len(read_lines(sm_server.kinesis_log)) == 3, what="3 records")


def test_persistence_of_a_stream_cannot_be_changed(sm_client):
    sm_client.create_message_stream(plain_stream("results"))
    with pytest.raises(UpdateNotAllowedException):
        sm_client.update_message_stream(plain_stream("results", persistence=Persistence.Memory))


def test_an_unwritable_kinesis_log_is_retried_until_it_works(tmp_path, monkeypatch):
    log_path = tmp_path / "kinesis.jsonl"
    log_path.mkdir()  # writing the log fails while this is a folder
    with StreamManagerServer(tmp_path / "sm", kinesis_log=log_path) as server:
        client = connect(server.port, server.auth_token, monkeypatch)
        client.create_message_stream(kinesis_stream("results"))
        client.append_message("results", b"r0")
        wait_until(lambda: client.describe_message_stream("results").export_statuses[0]
                   .error_message, what="the export error to show")
        log_path.rmdir()
        wait_until(lambda: len(read_lines(log_path)) == 1, what="the retried export")
        client.close()
