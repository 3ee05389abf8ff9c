"""The local Stream Manager as a process: clean shutdown, restart and SIGKILL lose nothing, and
export progress survives so nothing is exported twice."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from stream_manager import ReadMessagesOptions, Status

from .sm_fixtures import (  # noqa: F401  (pytest fixtures are used by name)
    ServerProcess,
    all_statuses,
    connect,
    kinesis_stream,
    plain_stream,
    read_lines,
    read_statuses,
    s3_stream,
    s3_task,
    server_process_fixture,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)


def payloads_of(client, name: str) -> list[bytes]:
    messages = client.read_messages(name, ReadMessagesOptions(max_message_count=100000))
    return [m.payload for m in messages]


def test_cli_prints_how_to_connect_and_stops_cleanly_on_sigterm(server_process, monkeypatch):
    proc = server_process()
    client = connect(proc.port, proc.token, monkeypatch)
    assert client.list_streams() == []
    client.close()
    assert proc.terminate() == 0


def test_acknowledged_messages_survive_sigkill(server_process, monkeypatch):
    proc = server_process()
    client = connect(proc.port, proc.token, monkeypatch)
    client.create_message_stream(plain_stream("results"))
    sent = [b"result-%d" % i * 20 for i in range(200)]
    for p in sent:
        client.append_message("results", p)
    client.close()
    proc.kill()

    proc = server_process(port=proc.port)
    client = connect(proc.port, proc.token, monkeypatch)
    assert payloads_of(client, "results") == sent
    assert client.append_message("results", b"after") == 200
    client.close()


def test_a_torn_record_at_the_tail_is_cut_off_on_restart(server_process, monkeypatch,
                                                         tmp_path: Path):
    proc = server_process()
    client = connect(proc.port, proc.token, monkeypatch)
    client.create_message_stream(plain_stream("results"))
    for i in range(3):
        client.append_message("results", b"m%d" % i)
    client.close()
    proc.kill()
    (segment,) = (tmp_path / "sm/streams").glob("*/*.seg")
    with segment.open("ab") as f:  # half a record, as a crash in the middle of a write leaves
        f.write(b"\x00\x00\x00\x10\x00\x00")

    proc = server_process(port=proc.port)
    client = connect(proc.port, proc.token, monkeypatch)
    assert payloads_of(client, "results") == [b"m0", b"m1", b"m2"]
    assert client.append_message("results", b"m3") == 3
    assert payloads_of(client, "results")[-1] == b"m3"
    client.close()


def kinesis_sequences(root: Path) -> list[int]:
    return [json.loads(line)["sequenceNumber"] for line in read_lines(root / "kinesis.jsonl")]


def test_export_progress_survives_sigkill_exactly_once(server_process, monkeypatch,
                                                       tmp_path: Path):
    proc = server_process()
    root = proc.root
    client = connect(proc.port, proc.token, monkeypatch)
    client.create_message_stream(plain_stream("status"))
    client.create_message_stream(s3_stream("uploads", "status"))
    client.create_message_stream(kinesis_stream("results"))
    staging = tmp_path / "staging"
    staging.mkdir()
    files = []
    for i in range(7):  # the 7th is a marker sent after the recovery
        files.append(staging / f"img-{i}.jpg")
        files[-1].write_bytes(b"image %d " % i * 500)

    for i in range(3):  # online: exported before the crash
        client.append_message("uploads", s3_task(files[i], f"k/img-{i}.jpg"))
        client.append_message("results", b"r%d" % i)
    read_statuses(client, "status", 6)
    wait_until(lambda: kinesis_sequences(root) == [0, 1, 2], what="3 records")
    (root / "OFFLINE").touch()
    log = tmp_path / "sm-process.log"  # the server process's stderr
    wait_until(lambda: "Stream Manager is now offline" in log.read_text(), what="offline")
    for i in range(3, 6):  # offline: buffered at the crash
        client.append_message("uploads", s3_task(files[i], f"k/img-{i}.jpg"))
        client.append_message("results", b"r%d" % i)
    client.close()
    proc.kill()

    proc = server_process(port=proc.port)  # starts offline: the flag file is still there
    client = connect(proc.port, proc.token, monkeypatch)
    online_ms = int(time.time() * 1000)  # the clock export times are stamped with
    (root / "OFFLINE").unlink()
    read_statuses(client, "status", 12)
    wait_until(lambda: len(kinesis_sequences(root)) >= 6, what="6 records")
    # Markers: exports run in sequence order, so anything exported twice after the restart would
    # have been exported before these.
    client.append_message("uploads", s3_task(files[6], "k/img-6.jpg"))
    client.append_message("results", b"r6")
    read_statuses(client, "status", 14)
    wait_until(lambda: 6 in kinesis_sequences(root), what="the marker record")
    statuses = all_statuses(client, "status")
    assert len(statuses) == 14
    successes = [s.status_context.sequence_number for s in statuses if s.status == Status.Success]
    assert sorted(successes) == list(range(7))
    records = [json.loads(line) for line in read_lines(root / "kinesis.jsonl")]
    assert [r["sequenceNumber"] for r in records] == list(range(7))
    # What was buffered while offline (before the kill, and after the restart, which starts
    # offline) went out only once the flag was gone.
    assert all(s.timestamp_epoch_ms >= online_ms for s in statuses
               if s.status_context.sequence_number >= 3)
    assert all(r["exportTime"] >= online_ms for r in records if r["sequenceNumber"] >= 3)
    for i, f in enumerate(files):
        assert (root / f"s3/review-bucket/k/img-{i}.jpg").read_bytes() == f.read_bytes()
    client.close()


def test_second_process_on_the_same_root_is_refused(server_process, tmp_path: Path):
    server_process()
    second = ServerProcess(tmp_path / "sm")
    with pytest.raises(AssertionError, match="did not start"):
        second.start(timeout_s=10)
    second.close()
    assert "another Stream Manager" in (tmp_path / "sm-process.log").read_text()


def test_kinesis_records_are_not_repeated_after_a_kill_right_after_export(server_process,
                                                                          monkeypatch):
    proc = server_process()
    log = proc.root / "kinesis.jsonl"
    client = connect(proc.port, proc.token, monkeypatch)
    client.create_message_stream(kinesis_stream("results"))
    for i in range(50):
        client.append_message("results", b"r%d" % i)
    wait_until(lambda: len(read_lines(log)) == 50, what="50 records")
    client.close()
    proc.kill()  # progress may not be saved yet: the log itself must tell what was exported

    proc = server_process(port=proc.port)
    client = connect(proc.port, proc.token, monkeypatch)
    client.append_message("results", b"r50")
    # Exports run in sequence order: a record exported again would come before the new one.
    wait_until(lambda: 50 in kinesis_sequences(proc.root), what="the new record")
    assert kinesis_sequences(proc.root) == list(range(51))
    client.close()


def test_s3_tasks_are_not_run_again_after_a_kill_right_after_export(server_process, monkeypatch,
                                                                   tmp_path: Path):
    proc = server_process()
    client = connect(proc.port, proc.token, monkeypatch)
    client.create_message_stream(plain_stream("status"))
    client.create_message_stream(s3_stream("uploads", "status"))
    files = [tmp_path / f"img-{i}.jpg" for i in range(20)]
    for i, f in enumerate(files):
        f.write_bytes(b"image %d " % i * 100)
        client.append_message("uploads", s3_task(f, f"k/img-{i}.jpg"))
    read_statuses(client, "status", 40)
    client.close()
    proc.kill()  # progress may not be saved yet: the status stream must tell what was done

    proc = server_process(port=proc.port)
    client = connect(proc.port, proc.token, monkeypatch)
    client.append_message("uploads", s3_task(files[0], "k/again.jpg"))

    def done() -> list[int]:
        return [s.status_context.sequence_number for s in all_statuses(client, "status")
                if s.status == Status.Success]

    # Tasks run in sequence order: one run again would report before the new task (20) does.
    wait_until(lambda: 20 in done(), what="the new task's success")
    assert done() == list(range(21))
    assert len(all_statuses(client, "status")) == 42
    client.close()
