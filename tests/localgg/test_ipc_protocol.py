"""Protocol violations from a raw socket: refused cleanly, and the server keeps serving."""

from __future__ import annotations

import json
import socket

import pytest

from localgg.eventstream import FrameDecoder, Header, encode_message
from localgg.ipc_server import APPLICATION_MESSAGE, CONNECT, PROTOCOL_ERROR

from .ipc_fixtures import ALLOW_ALL, client_for, run_client_script, running_ipc_server


def read_until_closed(sock: socket.socket) -> list:
    decoder, messages = FrameDecoder(), []
    sock.settimeout(5)
    while chunk := sock.recv(65536):
        messages += decoder.feed(chunk)
    return messages


def message_type(message) -> int:
    return message.header_values()[":message-type"]


@pytest.mark.timeout(60)
def test_corrupt_frame_gets_protocol_error_and_the_server_keeps_serving():
    with running_ipc_server() as server:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(server.socket_path))
            sock.sendall(b"\x00\x00\x00\x20" + b"garbage that is not a frame....")
            replies = read_until_closed(sock)
        assert [message_type(m) for m in replies] == [PROTOCOL_ERROR]
        with client_for(server, "com.example.A", access_control=ALLOW_ALL) as client:
            assert "ok" in client.call("publish", topic="t", json={})


@pytest.mark.timeout(30)
def test_operation_before_connect_gets_protocol_error():
    with running_ipc_server() as server, socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(server.socket_path))
        sock.sendall(encode_message([
            Header.int32(":message-type", APPLICATION_MESSAGE),
            Header.int32(":message-flags", 0),
            Header.int32(":stream-id", 1),
            Header.string("operation", "aws.greengrass#PublishToTopic"),
        ], b"{}"))
        replies = read_until_closed(sock)
        assert [message_type(m) for m in replies] == [PROTOCOL_ERROR]


def raw_subscriber(server, name: str, topic: str) -> socket.socket:
    """Connect and subscribe by hand, then never read again: a stalled component."""
    token = server.ipc_env(name)["SVCUID"]
    sock = socket.socket(socket.AF_UNIX)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(str(server.socket_path))
    sock.sendall(encode_message([
        Header.int32(":message-type", CONNECT), Header.int32(":message-flags", 0),
        Header.int32(":stream-id", 0), Header.string(":version", "0.1.0"),
    ], json.dumps({"authToken": token}).encode()) + encode_message([
        Header.int32(":message-type", APPLICATION_MESSAGE), Header.int32(":message-flags", 0),
        Header.int32(":stream-id", 1),
        Header.string("operation", "aws.greengrass#SubscribeToTopic"),
        Header.string(":content-type", "application/json"),
        Header.string("service-model-type", "aws.greengrass#SubscribeToTopicRequest"),
    ], json.dumps({"topic": topic}).encode()))
    return sock


PUBLISH_MANY = """
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage
client = GreengrassCoreIPCClientV2()
for i in range(3000):
    client.publish_to_topic(topic="t", publish_message=PublishMessage(
        json_message=JsonMessage(message={"i": i, "pad": "x" * 1000})))
print("published")
client.close()
"""


@pytest.mark.timeout(90)
def test_stalled_subscriber_does_not_block_publishers_or_grow_memory_without_bound():
    with running_ipc_server() as server:
        server.max_backlog_bytes = 256 * 1024
        server.add_component("com.example.Stalled", {}, ALLOW_ALL)
        server.add_component("com.example.Pub", {}, ALLOW_ALL)
        with raw_subscriber(server, "com.example.Stalled", "t"):
            result = run_client_script(server.ipc_env("com.example.Pub"), PUBLISH_MANY, 60)
            assert result.stdout.strip() == "published", result.stderr
            [conn] = [c for c in server._connections if c.component == "com.example.Stalled"]
            assert conn.dropped > 0
            assert conn.transport.get_write_buffer_size() < 2 * server.max_backlog_bytes
