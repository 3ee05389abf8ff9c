"""IoT Core MQTT through the local runtime: a JSON-lines "cloud" log plus local delivery."""

from __future__ import annotations

import base64
import json

import pytest

from .ipc_fixtures import client_for, running_ipc_server

MQTT = "aws.greengrass.ipc.mqttproxy"


def mqtt_policy(operations: list[str], resources: list[str]) -> dict:
    return {MQTT: {"test:mqtt:1": {"operations": operations, "resources": resources}}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cloud_records(server) -> list[dict]:
    return [json.loads(line) for line in server.cloud_log.read_text().splitlines()]


@pytest.mark.timeout(90)
def test_publish_lands_in_the_cloud_log_and_reaches_a_wildcard_subscriber():
    publisher_policy = mqtt_policy(["aws.greengrass#PublishToIoTCore"], ["vqi/test-thing/*"])
    observer_policy = mqtt_policy(["aws.greengrass#SubscribeToIoTCore"], ["vqi/+/results"])
    with running_ipc_server() as server, \
            client_for(server, "com.example.Observer", {}, observer_policy) as observer, \
            client_for(server, "com.example.Inference", {}, publisher_policy) as pub:
        assert "ok" in observer.call("subscribe_iot", id="o", topic="vqi/+/results")
        document = {"imageId": "img-1", "verdict": "ok"}
        assert "ok" in pub.call("publish_iot", topic="vqi/test-thing/results",
                                payload_b64=b64(json.dumps(document).encode()), qos="1")
        event = observer.next_event()
        assert event["topic"] == "vqi/test-thing/results"
        assert json.loads(base64.b64decode(event["payload_b64"])) == document
        [record] = cloud_records(server)
        assert record["component"] == "com.example.Inference"
        assert record["topic"] == "vqi/test-thing/results"
        assert record["qos"] == 1
        assert record["payload"] == document
        assert record["time"].endswith("+00:00")


@pytest.mark.timeout(60)
def test_non_json_payload_is_logged_as_base64():
    policy = mqtt_policy(["*"], ["*"])
    with running_ipc_server() as server, client_for(server, "com.example.A", {}, policy) as pub:
        pub.call("publish_iot", topic="raw/bytes", payload_b64=b64(b"\xff\x00binary"))
        [record] = cloud_records(server)
        assert record["payloadBase64"] is True
        assert base64.b64decode(record["payload"]) == b"\xff\x00binary"


@pytest.mark.timeout(60)
def test_unauthorized_iot_core_publish_raises_and_is_not_logged():
    policy = mqtt_policy(["aws.greengrass#PublishToIoTCore"], ["vqi/allowed"])
    with running_ipc_server() as server, client_for(server, "com.example.A", {}, policy) as pub:
        reply = pub.call("publish_iot", topic="vqi/forbidden", payload_b64=b64(b"{}"))
        assert reply["error"] == "UnauthorizedError"
        assert cloud_records(server) == []


@pytest.mark.timeout(60)
def test_local_pubsub_permission_does_not_grant_iot_core():
    policy = {"aws.greengrass.ipc.pubsub": {"p": {"operations": ["*"], "resources": ["*"]}}}
    with running_ipc_server() as server, client_for(server, "com.example.A", {}, policy) as pub:
        assert pub.call("publish_iot", topic="t", payload_b64=b64(b"1"))["error"] == \
            "UnauthorizedError"


@pytest.mark.timeout(60)
def test_message_from_the_cloud_side_reaches_iot_core_subscribers_only():
    policy = mqtt_policy(["aws.greengrass#SubscribeToIoTCore"], ["commands/#"])
    with running_ipc_server() as server, client_for(server, "com.example.A", {}, policy) as sub:
        sub.call("subscribe_iot", id="c", topic="commands/#")
        assert server.publish_from_cloud("commands/test-thing/reboot", b'{"now": true}') == 1
        event = sub.next_event()
        assert event["topic"] == "commands/test-thing/reboot"
        assert base64.b64decode(event["payload_b64"]) == b'{"now": true}'
        assert server.publish_from_cloud("other/topic", b"x") == 0
        assert cloud_records(server) == []
