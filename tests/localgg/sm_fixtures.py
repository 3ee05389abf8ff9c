"""Fixtures and helpers for the local Stream Manager tests (real SDK client, real sockets)."""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import cbor2
import pytest
from stream_manager import (
    ExportDefinition,
    KinesisConfig,
    MessageStreamDefinition,
    NotEnoughMessagesException,
    ReadMessagesOptions,
    S3ExportTaskDefinition,
    S3ExportTaskExecutorConfig,
    StatusConfig,
    StatusLevel,
    StatusMessage,
    StrategyOnFull,
    StreamManagerClient,
)
from stream_manager.data import (
    ConnectRequest,
    Operation,
    ResponseStatusCode,
    VersionInfo,
)
from stream_manager.util import Util

from localgg.stream_manager import StreamManagerServer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(name="sm_server")
def sm_server_fixture(tmp_path: Path) -> Iterator[StreamManagerServer]:
    server = StreamManagerServer(tmp_path / "sm")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="sm_client")
def sm_client_fixture(
    sm_server: StreamManagerServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StreamManagerClient]:
    client = connect(sm_server.port, sm_server.auth_token, monkeypatch)
    try:
        yield client
    finally:
        client.close()


def connect(port: int, token: str, monkeypatch: pytest.MonkeyPatch) -> StreamManagerClient:
    """The SDK reads its token from the environment, exactly as a component would."""
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", token)
    return StreamManagerClient(port=port, request_timeout=20)


def plain_stream(name: str, **kwargs: object) -> MessageStreamDefinition:
    kwargs.setdefault("strategy_on_full", StrategyOnFull.OverwriteOldestData)
    return MessageStreamDefinition(name=name, **kwargs)


def s3_stream(name: str, status_stream: str, level: StatusLevel = StatusLevel.INFO,
              identifier: str = "to-s3") -> MessageStreamDefinition:
    return plain_stream(name, export_definition=ExportDefinition(s3_task_executor=[
        S3ExportTaskExecutorConfig(
            identifier=identifier,
            status_config=StatusConfig(status_level=level, status_stream_name=status_stream),
        )
    ]))


def kinesis_stream(name: str, kinesis_name: str = "vqi-results", identifier: str = "to-kinesis",
                   **config: object) -> MessageStreamDefinition:
    return plain_stream(name, export_definition=ExportDefinition(kinesis=[
        KinesisConfig(identifier=identifier, kinesis_stream_name=kinesis_name, **config)
    ]))


def s3_task(path: Path, key: str, bucket: str = "review-bucket",
            metadata: dict[str, str] | None = None) -> bytes:
    task = S3ExportTaskDefinition(input_url=path.as_uri(), bucket=bucket, key=key,
                                  user_metadata=metadata)
    return Util.validate_and_serialize_to_json_bytes(task)


def read_statuses(client: StreamManagerClient, stream: str, count: int,
                  timeout_s: float = 10.0) -> list[StatusMessage]:
    """Exactly `count` statuses from the start of the status stream, waiting for them."""
    messages = client.read_messages(stream, ReadMessagesOptions(
        desired_start_sequence_number=0, min_message_count=count, max_message_count=count,
        read_timeout_millis=int(timeout_s * 1000)))
    return [Util.deserialize_json_bytes_to_obj(m.payload, StatusMessage) for m in messages]


def all_statuses(client: StreamManagerClient, stream: str) -> list[StatusMessage]:
    try:
        messages = client.read_messages(stream, ReadMessagesOptions(
            desired_start_sequence_number=0, min_message_count=1, max_message_count=100000))
    except NotEnoughMessagesException:
        return []
    return [Util.deserialize_json_bytes_to_obj(m.payload, StatusMessage) for m in messages]


def wait_until(predicate: Callable[[], object], timeout_s: float = 10.0,
               what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


class ServerProcess:
    """`python -m localgg.stream_manager` in a subprocess, for restart and crash tests."""

    def __init__(self, root: Path, port: int = 0, token: str = "test-token") -> None:
        self.root = root
        self.port = port
        self.token = token
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 20.0) -> ServerProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "scripts"), str(REPO)])
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root.parent / "sm-process.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "localgg.stream_manager", "--root", str(self.root),
                 "--port", str(self.port), "--token", self.token],
                env=env, stdout=subprocess.PIPE, stderr=log,
            )
        values: dict[str, str] = {}
        deadline = time.monotonic() + timeout_s
        assert self.proc.stdout is not None
        buffer = b""
        while "STREAM_MANAGER_SERVER_PORT" not in values or (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN" not in values
        ):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                self.kill()
                raise AssertionError("Stream Manager process did not start; see sm-process.log")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    key, _, value = line.decode().partition("=")
                    values[key] = value
        self.port = int(values["STREAM_MANAGER_SERVER_PORT"])
        assert values["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == self.token
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def close(self) -> None:
        self.kill()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(name="server_process")
def server_process_fixture(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(port: int = 0) -> ServerProcess:
        proc = ServerProcess(tmp_path / "sm", port=port).start()
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.close()


class Wire:
    """One raw connection speaking the SDK's framing (what `test_stream_manager_protocol` does by
    hand), for checks on order that the SDK hides: requests written back to back reach the server
    in that order on one connection, and answers are read back in the order the server sent them."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(bytes([1]))  # connect version
        self.send((Operation.Connect, ConnectRequest(
            request_id="connect", protocol_version=VersionInfo.PROTOCOL_VERSION.value,
            auth_token=token)))
        assert self._exact(1) == b"\x01"
        op, answer = self.receive()
        assert (op, answer["status"]) == (Operation.ConnectResponse,
                                          ResponseStatusCode.Success.value), answer

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "server closed the connection"
            data += chunk
        return data

    def send(self, *requests: tuple[Operation, object]) -> None:
        """Write every (operation, request) frame in one go."""
        frames = []
        for op, request in requests:
            payload = cbor2.dumps(request.as_dict())  # type: ignore[attr-defined]
            frames.append(struct.pack(">iB", len(payload) + 1, op.value) + payload)
        self.sock.sendall(b"".join(frames))

    def receive(self) -> tuple[Operation, dict]:
        length, op = struct.unpack(">iB", self._exact(5))
        return Operation(op), cbor2.loads(self._exact(length - 1))

    def close(self) -> None:
        self.sock.close()
