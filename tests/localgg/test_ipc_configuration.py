"""Configuration and state operations through the IPC server with the real SDK client."""

from __future__ import annotations

import pytest

from .ipc_fixtures import client_for, running_ipc_server

CONFIG = {"InboxDir": "/data/inbox", "Model": {"Threshold": 0.5, "Classes": ["ok", "scratch"]}}


@pytest.mark.timeout(60)
def test_get_configuration_of_self_subtree_leaf_and_other_component():
    with running_ipc_server() as server:
        server.add_component("com.example.Other", {"Port": 8088}, None)
        with client_for(server, "com.example.A", CONFIG) as client:
            assert client.call("get_config")["ok"] == {"componentName": "com.example.A",
                                                       "value": CONFIG}
            assert client.call("get_config", key_path=["Model"])["ok"]["value"] == \
                CONFIG["Model"]
            leaf = client.call("get_config", key_path=["Model", "Threshold"])["ok"]["value"]
            assert leaf == {"Threshold": 0.5}
            other = client.call("get_config", component="com.example.Other")["ok"]
            assert other == {"componentName": "com.example.Other", "value": {"Port": 8088}}


@pytest.mark.timeout(60)
def test_missing_key_or_component_raises_resource_not_found():
    with running_ipc_server() as server, client_for(server, "com.example.A", CONFIG) as client:
        assert client.call("get_config", key_path=["Nope"])["error"] == "ResourceNotFoundError"
        assert client.call("get_config", component="com.example.Ghost")["error"] == \
            "ResourceNotFoundError"


@pytest.mark.timeout(90)
def test_configuration_update_reaches_a_subscriber():
    with running_ipc_server() as server, \
            client_for(server, "com.example.A", CONFIG) as owner, \
            client_for(server, "com.example.Watcher", {}) as watcher:
        assert "ok" in watcher.call("subscribe_config", id="w", component="com.example.A",
                                    key_path=["Model"])
        assert "ok" in owner.call("update_config", key_path=["Model"],
                                  value={"Threshold": 0.8})
        assert watcher.next_event() == {"event": "w", "componentName": "com.example.A",
                                        "keyPath": ["Model", "Threshold"]}
        owner.call("update_config", key_path=[], value={"InboxDir": "/elsewhere"})
        assert watcher.no_event_within(0.5)  # outside the watched key path
        assert server.get_configuration("com.example.A")["Model"]["Threshold"] == 0.8


@pytest.mark.timeout(60)
def test_watching_a_key_path_that_does_not_exist_raises_resource_not_found():
    with running_ipc_server() as server, client_for(server, "com.example.A", CONFIG) as client:
        reply = client.call("subscribe_config", id="x", key_path=["NoSuchKey"])
        assert reply["error"] == "ResourceNotFoundError"


@pytest.mark.timeout(60)
def test_runtime_side_update_notifies_the_component_itself():
    with running_ipc_server() as server, client_for(server, "com.example.A", CONFIG) as client:
        client.call("subscribe_config", id="me")
        server.update_configuration("com.example.A", ["Model", "Threshold"], 0.25)
        assert client.next_event() == {"event": "me", "componentName": "com.example.A",
                                       "keyPath": ["Model", "Threshold"]}
        assert client.call("get_config", key_path=["Model", "Threshold"])["ok"]["value"] == \
            {"Threshold": 0.25}


@pytest.mark.timeout(60)
def test_update_into_a_leaf_path_is_an_invalid_argument():
    with running_ipc_server() as server, client_for(server, "com.example.A", CONFIG) as client:
        reply = client.call("update_config", key_path=["InboxDir", "x"], value={"y": 1})
        assert reply["error"] == "InvalidArgumentsError"


@pytest.mark.timeout(60)
def test_update_older_than_the_stored_value_fails_the_condition_check():
    with running_ipc_server() as server, client_for(server, "com.example.A", CONFIG) as client:
        assert "ok" in client.call("update_config", value={"InboxDir": "/new"}, timestamp=2000.0)
        reply = client.call("update_config", value={"InboxDir": "/old"}, timestamp=1000.0)
        assert reply["error"] == "FailedUpdateConditionCheckError"
        assert server.get_configuration("com.example.A")["InboxDir"] == "/new"


@pytest.mark.timeout(60)
def test_components_cannot_rewrite_their_access_control():
    with running_ipc_server() as server, client_for(server, "com.example.A", CONFIG) as client:
        reply = client.call("update_config", value={"accessControl": {}})
        assert reply["error"] == "InvalidArgumentsError"


@pytest.mark.timeout(60)
def test_update_state_is_recorded_per_component():
    with running_ipc_server() as server, client_for(server, "com.example.A", {}) as client:
        assert server.component_state("com.example.A") is None
        assert "ok" in client.call("update_state", state="RUNNING")
        assert server.component_state("com.example.A") == "RUNNING"
        client.call("update_state", state="ERRORED")
        assert server.component_state("com.example.A") == "ERRORED"
