"""Local publish/subscribe through the IPC server, driven by real SDK clients in subprocesses."""

from __future__ import annotations

import base64

import pytest

from .ipc_fixtures import ALLOW_ALL, client_for, running_ipc_server

PUBSUB = "aws.greengrass.ipc.pubsub"


def pubsub_policy(operations: list[str], resources: list[str]) -> dict:
    return {PUBSUB: {"test:pubsub:1": {"operations": operations, "resources": resources}}}


@pytest.mark.timeout(90)
def test_two_clients_round_trip_json_and_binary_messages():
    with running_ipc_server() as server, \
            client_for(server, "com.example.Sub", access_control=ALLOW_ALL) as sub, \
            client_for(server, "com.example.Pub", access_control=ALLOW_ALL) as pub:
        assert "ok" in sub.call("subscribe", id="s", topic="vqi/results")
        assert "ok" in pub.call("publish", topic="vqi/results", json={"imageId": "a1", "n": [1]})
        assert sub.next_event() == {"event": "s", "topic": "vqi/results",
                                    "json": {"imageId": "a1", "n": [1]}}
        blob = bytes(range(256))
        pub.call("publish", topic="vqi/results", binary_b64=base64.b64encode(blob).decode())
        event = sub.next_event()
        assert event["topic"] == "vqi/results"
        assert base64.b64decode(event["binary_b64"]) == blob


@pytest.mark.timeout(90)
def test_wildcard_subscriptions_receive_what_mqtt_would_deliver():
    with running_ipc_server() as server, \
            client_for(server, "com.example.Sub", access_control=ALLOW_ALL) as sub, \
            client_for(server, "com.example.Pub", access_control=ALLOW_ALL) as pub:
        sub.call("subscribe", id="plus", topic="vqi/+/results")
        sub.call("subscribe", id="hash", topic="vqi/#")
        for topic in ("vqi/t1/results", "vqi", "vqi/t1/results/extra", "other/t1/results"):
            pub.call("publish", topic=topic, json={"topic": topic})
        got = {(event["event"], event["topic"]) for event in sub.drain()}
        assert got == {("plus", "vqi/t1/results"), ("hash", "vqi/t1/results"),
                       ("hash", "vqi"), ("hash", "vqi/t1/results/extra")}


@pytest.mark.timeout(60)
def test_publish_outside_access_control_raises_unauthorized_error():
    policy = pubsub_policy(["aws.greengrass#PublishToTopic"], ["vqi/images"])
    with running_ipc_server() as server, client_for(server, "com.example.Pub", {}, policy) as pub:
        assert "ok" in pub.call("publish", topic="vqi/images", json={})
        reply = pub.call("publish", topic="vqi/results", json={})
        assert reply["error"] == "UnauthorizedError"
        assert "vqi/results" in reply["message"]


@pytest.mark.timeout(60)
def test_subscribe_needs_a_resource_covering_the_filter():
    policy = pubsub_policy(["aws.greengrass#SubscribeToTopic"], ["vqi/*/results"])
    with running_ipc_server() as server, client_for(server, "com.example.Sub", {}, policy) as sub:
        assert "ok" in sub.call("subscribe", id="a", topic="vqi/t1/results")
        assert "ok" in sub.call("subscribe", id="b", topic="vqi/+/results")
        assert sub.call("subscribe", id="c", topic="vqi/#")["error"] == "UnauthorizedError"


@pytest.mark.timeout(60)
def test_local_pubsub_policy_with_plus_matches_only_the_literal_filter():
    policy = pubsub_policy(["aws.greengrass#SubscribeToTopic"], ["vqi/+/results"])
    with running_ipc_server() as server, client_for(server, "com.example.Sub", {}, policy) as sub:
        assert sub.call("subscribe", id="a", topic="vqi/t1/results")["error"] == \
            "UnauthorizedError"
        assert "ok" in sub.call("subscribe", id="b", topic="vqi/+/results")


@pytest.mark.timeout(60)
def test_publish_with_a_wildcard_topic_is_an_invalid_argument():
    with running_ipc_server() as server, \
            client_for(server, "com.example.Pub", access_control=ALLOW_ALL) as pub:
        assert pub.call("publish", topic="vqi/#", json={})["error"] == "InvalidArgumentsError"


@pytest.mark.timeout(90)
def test_closed_subscription_stream_gets_no_more_messages():
    with running_ipc_server() as server, \
            client_for(server, "com.example.Sub", access_control=ALLOW_ALL) as sub, \
            client_for(server, "com.example.Pub", access_control=ALLOW_ALL) as pub:
        sub.call("subscribe", id="s", topic="t")
        sub.call("subscribe", id="keep", topic="t")
        pub.call("publish", topic="t", json=1)
        assert {sub.next_event()["event"], sub.next_event()["event"]} == {"s", "keep"}
        assert "ok" in sub.call("close_stream", id="s")
        pub.call("publish", topic="t", json=2)
        assert sub.next_event() == {"event": "keep", "topic": "t", "json": 2}
        assert sub.no_event_within(0.5)


@pytest.mark.timeout(90)
def test_disconnected_subscriber_is_forgotten_and_publishing_goes_on():
    with running_ipc_server() as server, \
            client_for(server, "com.example.Pub", access_control=ALLOW_ALL) as pub:
        sub = client_for(server, "com.example.Sub", access_control=ALLOW_ALL)
        sub.call("subscribe", id="s", topic="t")
        sub.proc.kill()
        sub.proc.wait()
        for i in range(20):
            assert "ok" in pub.call("publish", topic="t", json=i)
        with client_for(server, "com.example.Sub2", access_control=ALLOW_ALL) as sub2:
            sub2.call("subscribe", id="s2", topic="t")
            pub.call("publish", topic="t", json="after")
            assert sub2.next_event()["json"] == "after"


@pytest.mark.timeout(60)
def test_wildcard_subscription_by_default_skips_own_messages_like_the_nucleus():
    with running_ipc_server() as server, \
            client_for(server, "com.example.Both", access_control=ALLOW_ALL) as both:
        both.call("subscribe", id="exact", topic="t/a")
        both.call("subscribe", id="wild", topic="t/+")
        both.call("publish", topic="t/a", json="mine")
        assert [e["event"] for e in both.drain(0.5)] == ["exact"]


@pytest.mark.timeout(60)
def test_receive_mode_from_others_skips_own_messages():
    with running_ipc_server() as server, \
            client_for(server, "com.example.Both", access_control=ALLOW_ALL) as both, \
            client_for(server, "com.example.Other", access_control=ALLOW_ALL) as other:
        both.call("subscribe", id="s", topic="t", receive_mode="RECEIVE_MESSAGES_FROM_OTHERS")
        both.call("publish", topic="t", json="mine")
        other.call("publish", topic="t", json="theirs")
        assert both.next_event()["json"] == "theirs"
        assert both.no_event_within(0.3)
