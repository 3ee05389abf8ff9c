"""Reconnecting Stream Manager client."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from localgg.stream_manager import StreamManagerServer
from vqi_uploader.smlink import Stopped, StreamManagerLink, new_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(60)
def test_failed_connects_do_not_leak_event_loop_threads(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAM_MANAGER_SERVER_PORT", str(free_port()))
    before = threading.active_count()
    for _ in range(20):
        with pytest.raises(ConnectionError):
            new_client(3, "test")
    # A leak leaves one event-loop thread per failed connect (20). Other tests' threads may still
    # be winding down, so allow a few and give exiting threads a moment.
    deadline = time.monotonic() + 5
    while threading.active_count() > before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threading.active_count() <= before + 5


@pytest.mark.timeout(60)
def test_calls_wait_for_the_server_then_succeed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    port = free_port()
    monkeypatch.setenv("STREAM_MANAGER_SERVER_PORT", str(port))
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok")
    stop = threading.Event()
    connects = []
    link = StreamManagerLink("t", stop, connects.append, request_timeout=3, backoff_max=0.2)
    server = StreamManagerServer(tmp_path / "sm", port=port, auth_token="tok")
    timer = threading.Timer(1.0, server.start)
    timer.start()
    try:
        assert link.call(lambda c: c.list_streams()) == []
        assert link.failures == 0 and len(connects) == 1
        server.stop()
        server = StreamManagerServer(tmp_path / "sm", port=port, auth_token="tok")
        threading.Timer(0.5, server.start).start()
        assert link.call(lambda c: c.list_streams()) == []
        assert len(connects) == 2  # streams ensured again on the new connection
    finally:
        timer.join()
        link.close()
        server.stop()


def test_a_stopping_service_ends_the_wait(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAM_MANAGER_SERVER_PORT", str(free_port()))
    stop = threading.Event()
    link = StreamManagerLink("t", stop, lambda c: None, request_timeout=3, backoff_max=0.1)
    threading.Timer(0.5, stop.set).start()
    with pytest.raises(Stopped):
        link.call(lambda c: c.list_streams())
