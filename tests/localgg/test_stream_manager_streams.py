"""The local Stream Manager serves the unmodified `stream-manager` SDK client: streams, appends,
reads, size limits, persistence and authentication."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from stream_manager import (
    ConnectFailedException,
    InvalidRequestException,
    NotEnoughMessagesException,
    Persistence,
    ReadMessagesOptions,
    ResourceNotFoundException,
    StrategyOnFull,
    StreamManagerClient,
)
from stream_manager.data import (
    AppendMessageRequest,
    ListStreamsRequest,
    Operation,
    ReadMessagesRequest,
    ResponseStatusCode,
)

from localgg.stream_manager import StreamManagerServer

from .sm_fixtures import (  # noqa: F401  (pytest fixtures are used by name)
    Wire,
    connect,
    plain_stream,
    s3_stream,
    sm_client_fixture,
    sm_server_fixture,
)

pytestmark = pytest.mark.timeout(60)


def read(client: StreamManagerClient, name: str, start: int = 0, min_count: int = 1,
         max_count: int | None = None, timeout_ms: int = 0) -> list[int]:
    messages = client.read_messages(name, ReadMessagesOptions(
        desired_start_sequence_number=start, min_message_count=min_count,
        max_message_count=max_count, read_timeout_millis=timeout_ms))
    return [m.sequence_number for m in messages]


def test_created_stream_is_described_with_effective_defaults(sm_client):
    sm_client.create_message_stream(plain_stream("results"))
    info = sm_client.describe_message_stream("results")
    assert info.definition.name == "results"
    assert info.definition.max_size == 256 * 1024 * 1024
    assert info.definition.persistence == Persistence.File
    assert info.definition.strategy_on_full == StrategyOnFull.OverwriteOldestData
    assert info.storage_status.total_bytes == 0
    assert info.storage_status.newest_sequence_number == -1


def test_list_and_delete_streams(sm_client):
    for name in ("b-stream", "a stream, with.odd_name"):
        sm_client.create_message_stream(plain_stream(name))
    assert sm_client.list_streams() == ["a stream, with.odd_name", "b-stream"]
    sm_client.delete_message_stream("b-stream")
    assert sm_client.list_streams() == ["a stream, with.odd_name"]
    with pytest.raises(ResourceNotFoundException):
        sm_client.describe_message_stream("b-stream")
    with pytest.raises(ResourceNotFoundException):
        sm_client.delete_message_stream("b-stream")


def test_creating_an_existing_stream_is_an_invalid_request(sm_client):
    sm_client.create_message_stream(plain_stream("results"))
    with pytest.raises(InvalidRequestException, match="already exists"):
        sm_client.create_message_stream(plain_stream("results"))


def test_append_to_missing_stream_is_not_found(sm_client):
    with pytest.raises(ResourceNotFoundException):
        sm_client.append_message("nope", b"x")


def test_appends_get_consecutive_sequence_numbers_and_keep_their_bytes(sm_client):
    sm_client.create_message_stream(plain_stream("results"))
    payloads = [bytes([i]) * (i * 1000 + 1) for i in range(5)] + [b"\x00\xff binary"]
    assert [sm_client.append_message("results", p) for p in payloads] == list(range(6))
    messages = sm_client.read_messages("results", ReadMessagesOptions(max_message_count=10))
    assert [m.payload for m in messages] == payloads
    assert all(m.stream_name == "results" and m.ingest_time > 0 for m in messages)


def test_read_honours_start_and_batch_sizes(sm_client):
    sm_client.create_message_stream(plain_stream("results"))
    for i in range(10):
        sm_client.append_message("results", b"m%d" % i)
    assert read(sm_client, "results", start=3, max_count=4) == [3, 4, 5, 6]
    assert read(sm_client, "results", start=8, max_count=100) == [8, 9]
    assert read(sm_client, "results", start=2, min_count=3, max_count=3) == [2, 3, 4]
    assert sm_client.read_messages("results")[0].sequence_number == 0  # SDK defaults: 1 from 0


def read_request(request_id: str, name: str, min_count: int, max_count: int,
                 timeout_ms: int) -> tuple[Operation, ReadMessagesRequest]:
    return Operation.ReadMessages, ReadMessagesRequest(
        request_id=request_id, stream_name=name, read_messages_options=ReadMessagesOptions(
            min_message_count=min_count, max_message_count=max_count,
            read_timeout_millis=timeout_ms))


def append_request(request_id: str, name: str, payload: bytes
                   ) -> tuple[Operation, AppendMessageRequest]:
    return Operation.AppendMessage, AppendMessageRequest(request_id=request_id, name=name,
                                                         payload=payload)


def test_read_without_enough_messages_and_no_timeout_fails_at_once(sm_server, sm_client):
    sm_client.create_message_stream(plain_stream("results"))
    sm_client.append_message("results", b"only one")
    with pytest.raises(NotEnoughMessagesException):
        read(sm_client, "results", min_count=2, max_count=5)
    # At once, not after a wait: an append written right behind the read on the same connection,
    # which would satisfy a waiting read, is handled only after the read has been answered.
    wire = Wire(sm_server.port, sm_server.auth_token)
    try:
        wire.send(read_request("read", "results", 2, 5, 0),
                  append_request("append", "results", b"second"))
        answers = [wire.receive() for _ in range(2)]
    finally:
        wire.close()
    assert [(op, answer["requestId"]) for op, answer in answers] == [
        (Operation.ReadMessagesResponse, "read"), (Operation.AppendMessageResponse, "append")]
    assert answers[0][1]["status"] == ResponseStatusCode.NotEnoughMessages.value


def test_read_with_timeout_waits_the_whole_timeout_then_gives_up(sm_client):
    sm_client.create_message_stream(plain_stream("results"))
    start = time.monotonic()
    with pytest.raises(NotEnoughMessagesException):  # the server's answer, not a client timeout
        read(sm_client, "results", timeout_ms=700)
    # read_timeout_millis promises a wait of at least that long, counted from when the server got
    # the request (after `start`, on the same monotonic clock): a lower bound that always holds.
    # How soon after it the answer comes is not a guarantee, so it is not checked.
    assert time.monotonic() - start >= 0.7


def test_blocked_read_returns_when_enough_messages_arrive_on_the_same_connection(sm_server,
                                                                                 sm_client):
    sm_client.create_message_stream(plain_stream("results"))
    wire = Wire(sm_server.port, sm_server.auth_token)
    try:
        # The read waits (the stream is empty; its timeout is an hour, far beyond this test's own
        # timeout, so only the appends can end the wait). A request behind it on the same
        # connection is answered first: the read is parked and holds nothing up.
        wire.send(read_request("read", "results", 3, 10, 3_600_000),
                  (Operation.ListStreams, ListStreamsRequest(request_id="list")))
        op, answer = wire.receive()
        assert (op, answer["requestId"]) == (Operation.ListStreamsResponse, "list")
        wire.send(*(append_request(f"append-{i}", "results", b"m%d" % i) for i in range(3)))
        answers = [wire.receive() for _ in range(4)]
    finally:
        wire.close()
    assert [answer["requestId"] for _, answer in answers] == [
        "append-0", "append-1", "append-2", "read"]
    assert [answer["status"] for _, answer in answers] == [
        ResponseStatusCode.Success.value] * 4
    messages = answers[3][1]["messages"]
    assert [(m["sequenceNumber"], m["payload"]) for m in messages] == [
        (0, b"m0"), (1, b"m1"), (2, b"m2")]


def test_reject_new_data_refuses_appends_once_full(sm_client):
    sm_client.create_message_stream(plain_stream(
        "small", max_size=2048, stream_segment_size=1024,
        strategy_on_full=StrategyOnFull.RejectNewData))
    accepted = 0
    with pytest.raises(InvalidRequestException, match="full"):
        for _ in range(100):
            sm_client.append_message("small", b"x" * 100)
            accepted += 1
    assert accepted == 2048 // (100 + 24)  # 24 bytes of record header per message
    assert read(sm_client, "small", max_count=100) == list(range(accepted))


def test_overwrite_oldest_data_drops_oldest_segments_to_make_room(sm_client):
    sm_client.create_message_stream(plain_stream(
        "small", max_size=2048, stream_segment_size=1024,
        strategy_on_full=StrategyOnFull.OverwriteOldestData))
    for i in range(100):
        assert sm_client.append_message("small", b"%03d" % i + b"x" * 97) == i
    status = sm_client.describe_message_stream("small").storage_status
    assert status.newest_sequence_number == 99
    assert 0 < status.oldest_sequence_number <= 99 - 8  # at least one full segment is kept
    assert status.total_bytes <= 2048
    got = sm_client.read_messages("small", ReadMessagesOptions(max_message_count=100))
    assert [m.sequence_number for m in got] == list(range(status.oldest_sequence_number, 100))
    assert got[-1].payload.startswith(b"099")


def test_message_larger_than_the_stream_is_rejected(sm_client):
    sm_client.create_message_stream(plain_stream("small", max_size=1024))
    with pytest.raises(InvalidRequestException, match="cannot fit"):
        sm_client.append_message("small", b"x" * 2000)


def test_s3_task_stream_rejects_messages_that_are_not_task_definitions(sm_client):
    sm_client.create_message_stream(plain_stream("status"))
    sm_client.create_message_stream(s3_stream("uploads", "status"))
    with pytest.raises(InvalidRequestException, match="S3ExportTaskDefinition|JSON"):
        sm_client.append_message("uploads", b"not json")


def test_s3_task_stream_needs_its_status_stream_first(sm_client):
    with pytest.raises(InvalidRequestException, match="status stream"):
        sm_client.create_message_stream(s3_stream("uploads", "missing-status"))


def test_file_streams_survive_restart_and_memory_streams_do_not(tmp_path: Path, monkeypatch):
    root = tmp_path / "sm"
    with StreamManagerServer(root) as server:
        client = connect(server.port, server.auth_token, monkeypatch)
        client.create_message_stream(plain_stream("on-disk"))
        client.create_message_stream(plain_stream("in-memory", persistence=Persistence.Memory))
        for i in range(5):
            client.append_message("on-disk", b"d%d" % i)
            client.append_message("in-memory", b"m%d" % i)
        client.close()
    with StreamManagerServer(root) as server:
        client = connect(server.port, server.auth_token, monkeypatch)
        assert client.list_streams() == ["on-disk"]
        messages = client.read_messages("on-disk", ReadMessagesOptions(max_message_count=10))
        assert [m.payload for m in messages] == [b"d%d" % i for i in range(5)]
        assert client.append_message("on-disk", b"next") == 5
        client.close()


def test_two_servers_cannot_share_a_root(tmp_path: Path):
    with StreamManagerServer(tmp_path / "sm"):
        with pytest.raises(RuntimeError, match="another Stream Manager"):
            StreamManagerServer(tmp_path / "sm").start()


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_client_without_the_right_token_is_refused(sm_server, monkeypatch, token):
    if token is None:
        monkeypatch.delenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", raising=False)
    else:
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", token)
    with pytest.raises(ConnectFailedException):
        StreamManagerClient(port=sm_server.port, request_timeout=5)


def test_an_unreadable_stream_is_skipped_and_kept_on_disk(tmp_path: Path, monkeypatch):
    root = tmp_path / "sm"
    with StreamManagerServer(root) as server:
        client = connect(server.port, server.auth_token, monkeypatch)
        client.create_message_stream(plain_stream("good"))
        client.create_message_stream(plain_stream("broken"))
        client.append_message("broken", b"precious")
        client.close()
    (root / "streams/s-broken/stream.json").write_text("{not json")
    with StreamManagerServer(root) as server:
        client = connect(server.port, server.auth_token, monkeypatch)
        assert client.list_streams() == ["good"]
        client.create_message_stream(plain_stream("broken"))  # the old folder is moved aside
        client.close()
    kept = list((root / "streams").glob(".unloadable-s-broken-*/*.seg"))
    assert len(kept) == 1 and b"precious" in kept[0].read_bytes()
