"""Wire-level behaviour the SDK does not exercise: bad input gets a clear status and the
connection (and server) keep working."""

from __future__ import annotations

import socket
import struct

import cbor2
import pytest
from stream_manager.data import (
    AppendMessageResponse,
    ConnectRequest,
    ConnectResponse,
    ListStreamsRequest,
    ListStreamsResponse,
    Operation,
    ResponseStatusCode,
    UnknownOperationError,
    VersionInfo,
)

from .sm_fixtures import sm_server_fixture  # noqa: F401  (pytest fixture used by name)

pytestmark = pytest.mark.timeout(30)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "server closed the connection"
        data += chunk
    return data


def send_frame(sock: socket.socket, op: int, payload: bytes) -> None:
    sock.sendall(struct.pack(">iB", len(payload) + 1, op) + payload)


def recv_frame(sock: socket.socket) -> tuple[int, dict]:
    length, op = struct.unpack(">iB", recv_exact(sock, 5))
    return op, cbor2.loads(recv_exact(sock, length - 1))


def raw_connect(port: int, token: str, version: int = 1) -> tuple[socket.socket, ConnectResponse]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    req = ConnectRequest(request_id="connect-1",
                         protocol_version=VersionInfo.PROTOCOL_VERSION.value, auth_token=token)
    sock.sendall(bytes([version]))
    send_frame(sock, Operation.Connect.value, cbor2.dumps(req.as_dict()))
    assert recv_exact(sock, 1) == b"\x01"
    op, payload = recv_frame(sock)
    assert op == Operation.ConnectResponse.value
    return sock, ConnectResponse.from_dict(payload)


def list_streams(sock: socket.socket) -> ListStreamsResponse:
    send_frame(sock, Operation.ListStreams.value,
               cbor2.dumps(ListStreamsRequest(request_id="list-1").as_dict()))
    op, payload = recv_frame(sock)
    assert op == Operation.ListStreamsResponse.value
    return ListStreamsResponse.from_dict(payload)


def test_connect_response_names_the_protocol_and_a_client_id(sm_server):
    sock, resp = raw_connect(sm_server.port, sm_server.auth_token)
    with sock:
        assert resp.status == ResponseStatusCode.Success
        assert resp.request_id == "connect-1"
        assert resp.protocol_version == VersionInfo.PROTOCOL_VERSION.value
        assert resp.client_identifier


def test_unsupported_connect_version_is_refused(sm_server):
    sock, resp = raw_connect(sm_server.port, sm_server.auth_token, version=7)
    with sock:
        assert resp.status == ResponseStatusCode.UnsupportedConnectVersion


def test_unknown_operation_gets_an_error_and_the_connection_goes_on(sm_server):
    sock, _ = raw_connect(sm_server.port, sm_server.auth_token)
    with sock:
        send_frame(sock, 99, cbor2.dumps({"requestId": "odd-1"}))
        op, payload = recv_frame(sock)
        assert op == Operation.UnknownOperationError.value
        err = UnknownOperationError.from_dict(payload)
        assert (err.request_id, err.status) == ("odd-1", ResponseStatusCode.UnknownOperation)
        assert list_streams(sock).status == ResponseStatusCode.Success


@pytest.mark.parametrize("payload", [
    b"\xff\xfe not cbor",
    cbor2.dumps([1, 2, 3]),
    cbor2.dumps({"requestId": "bad-1", "name": "s", "payload": "text, not bytes"}),
    cbor2.dumps({"requestId": "bad-1", "name": "bad/name", "payload": b"x"}),
])
def test_malformed_request_is_an_invalid_request_and_the_connection_goes_on(sm_server, payload):
    sock, _ = raw_connect(sm_server.port, sm_server.auth_token)
    with sock:
        send_frame(sock, Operation.AppendMessage.value, payload)
        op, body = recv_frame(sock)
        assert op == Operation.AppendMessageResponse.value
        assert AppendMessageResponse.from_dict(body).status == ResponseStatusCode.InvalidRequest
        assert list_streams(sock).status == ResponseStatusCode.Success


def test_a_client_that_breaks_the_framing_is_dropped_and_others_are_served(sm_server):
    sock, _ = raw_connect(sm_server.port, sm_server.auth_token)
    with sock:
        sock.sendall(struct.pack(">iB", -5, 4))
        assert sock.recv(1) == b""  # closed by the server
    sock, resp = raw_connect(sm_server.port, sm_server.auth_token)
    with sock:
        assert list_streams(sock).status == ResponseStatusCode.Success
