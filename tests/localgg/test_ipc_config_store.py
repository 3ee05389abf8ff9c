"""Component configuration trees: reads, merges, timestamps and change notifications."""

from __future__ import annotations

import pytest

from localgg.config_store import ConfigError, ConfigNotFoundError, ConfigStore


def make_store() -> ConfigStore:
    store = ConfigStore()
    store.add_component("A", {"Inbox": "/in", "Model": {"Threshold": 0.5, "Classes": ["ok"]}})
    return store


def test_reads_whole_tree_subtree_and_leaf():
    store = make_store()
    assert store.get("A")["Inbox"] == "/in"
    assert store.get("A", ["Model"]) == {"Threshold": 0.5, "Classes": ["ok"]}
    assert store.get("A", ["Model", "Threshold"]) == 0.5


def test_reads_are_copies():
    store = make_store()
    store.get("A", ["Model"])["Threshold"] = 9
    assert store.get("A", ["Model", "Threshold"]) == 0.5


def test_missing_key_and_component_raise_not_found():
    store = make_store()
    with pytest.raises(ConfigNotFoundError, match="Nope"):
        store.get("A", ["Model", "Nope"])
    with pytest.raises(ConfigNotFoundError, match="B"):
        store.get("B")


def test_object_merge_keeps_untouched_keys_and_reports_changed_leaves():
    store = make_store()
    changed = store.update("A", ["Model"], {"Threshold": 0.7, "New": {"Deep": 1}})
    assert sorted(changed) == [["Model", "New", "Deep"], ["Model", "Threshold"]]
    assert store.get("A", ["Model"]) == {"Threshold": 0.7, "Classes": ["ok"], "New": {"Deep": 1}}


def test_scalar_value_sets_the_leaf_at_the_key_path():
    store = make_store()
    assert store.update("A", ["Inbox"], "/other") == [["Inbox"]]
    assert store.get("A", ["Inbox"]) == "/other"


def test_unchanged_value_is_not_reported():
    store = make_store()
    assert store.update("A", [], {"Inbox": "/in"}) == []


def test_older_timestamp_loses():
    store = make_store()
    store.update("A", ["Inbox"], "/new", timestamp=200.0)
    assert store.update("A", ["Inbox"], "/stale", timestamp=100.0) == []
    assert store.get("A", ["Inbox"]) == "/new"


def test_path_through_a_leaf_is_refused():
    store = make_store()
    with pytest.raises(ConfigError, match="is a value"):
        store.update("A", ["Inbox", "x"], 1)


def test_subscribers_hear_changes_at_or_below_their_path_only():
    store = make_store()
    heard = []
    store.subscribe("A", ["Model"], lambda c, p: heard.append((c, p)))
    store.update("A", [], {"Inbox": "/x", "Model": {"Threshold": 0.9}})
    assert heard == [("A", ["Model", "Threshold"])]


def test_unsubscribed_callback_is_not_called():
    store = make_store()
    heard = []
    token = store.subscribe("A", [], lambda c, p: heard.append(p))
    store.unsubscribe(token)
    store.update("A", ["Inbox"], "/y")
    assert heard == []
