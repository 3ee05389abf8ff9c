"""Connection handshake and protocol behaviour seen by the real SDK client."""

from __future__ import annotations

import pytest

from localgg.ipc_server import SVCUID_ENV

from .ipc_fixtures import (
    ALLOW_ALL,
    ClientProcess,
    client_for,
    run_client_script,
    running_ipc_server,
)


@pytest.mark.timeout(60)
def test_connect_with_a_wrong_svcuid_is_refused_with_access_denied():
    with running_ipc_server() as server:
        server.add_component("com.example.A", {}, ALLOW_ALL)
        env = {**server.ipc_env("com.example.A"), SVCUID_ENV: "not-the-token"}
        with pytest.raises(ConnectionError, match="AccessDeniedError"):
            ClientProcess(env)


@pytest.mark.timeout(60)
def test_re_registering_a_component_revokes_its_old_svcuid():
    with running_ipc_server() as server:
        server.add_component("com.example.A", {}, ALLOW_ALL)
        old_env = server.ipc_env("com.example.A")
        server.add_component("com.example.A", {}, ALLOW_ALL)
        with pytest.raises(ConnectionError, match="AccessDeniedError"):
            ClientProcess(old_env)


@pytest.mark.timeout(60)
def test_operation_not_emulated_raises_service_error_without_hanging():
    with running_ipc_server() as server, \
            client_for(server, "com.example.A", access_control=ALLOW_ALL) as client:
        reply = client.call("get_secret", secret_id="db-password", timeout=10)
        assert reply["error"] == "ServiceError"
        assert "GetSecretValue" in reply["message"]
        assert reply["seconds"] < 2


UNKNOWN_OPERATION = """
from awsiot import eventstreamrpc as rpc
from awsiot.greengrasscoreipc import connect, model

class Bogus(rpc.ClientOperation):
    @classmethod
    def _model_name(cls): return "aws.greengrass#NoSuchOperation"
    @classmethod
    def _request_type(cls): return model.ListComponentsRequest
    @classmethod
    def _response_type(cls): return model.ListComponentsResponse

client = connect()
op = client._new_operation(Bogus)
op._activate(model.ListComponentsRequest())
try:
    op._get_response().result(5)
except Exception as exc:
    print(type(exc).__name__, exc)
client.close()
"""


@pytest.mark.timeout(60)
def test_unknown_operation_name_is_answered_with_an_error():
    with running_ipc_server() as server:
        server.add_component("com.example.A", {}, ALLOW_ALL)
        result = run_client_script(server.ipc_env("com.example.A"), UNKNOWN_OPERATION)
        assert result.returncode == 0, result.stderr
        assert "UnsupportedOperation" in result.stdout


PING = """
import threading
from awsiot import eventstreamrpc as rpc
from awsiot.greengrasscoreipc import connect
from awscrt.eventstream.rpc import MessageType

pong = threading.Event()
client = connect()
handler = client._connection._synced.current_handler
original = handler.on_protocol_message
def spy(headers, payload, message_type, flags, **kwargs):
    if message_type == MessageType.PING_RESPONSE and payload == b"hello":
        pong.set()
    return original(headers, payload, message_type, flags, **kwargs)
handler.on_protocol_message = spy
client._connection.send_ping(rpc.MessageAmendment(payload=b"hello")).result(5)
print("PONG" if pong.wait(5) else "NO PONG")
client.close()
"""


@pytest.mark.timeout(60)
def test_ping_is_answered_with_ping_response_echoing_the_payload():
    with running_ipc_server() as server:
        server.add_component("com.example.A", {}, ALLOW_ALL)
        result = run_client_script(server.ipc_env("com.example.A"), PING)
        assert result.stdout.strip() == "PONG", result.stderr


@pytest.mark.timeout(30)
def test_server_stop_removes_the_socket_and_clients_see_the_disconnect():
    with running_ipc_server() as server:
        server.add_component("com.example.A", {}, ALLOW_ALL)
        env = server.ipc_env("com.example.A")
        client = ClientProcess(env)
        try:
            server.stop()
            assert not server.socket_path.exists()
            reply = client.call("publish", topic="t", json={})
            assert "error" in reply
        finally:
            client.proc.kill()
            client.proc.wait()
