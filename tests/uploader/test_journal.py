"""Persistent state: handled image ids and the status read offset."""

from __future__ import annotations

from vqi_uploader.journal import HandledIds, Journal, OffsetFile


def test_handled_ids_survive_a_reopen_with_their_archive(tmp_path):
    path = str(tmp_path / "handled.jsonl")
    ids = HandledIds(path, limit=100)
    ids.add("a", {"result_sequence": 3, "review": True})
    ids.close()
    again = HandledIds(path, limit=100)
    assert "a" in again and again.get("a") == {"result_sequence": 3, "review": True}


def test_handled_ids_keep_only_the_newest_and_compact_the_file(tmp_path):
    path = tmp_path / "handled.jsonl"
    ids = HandledIds(str(path), limit=10)
    for i in range(35):
        ids.add(f"id{i}", {})
    assert len(ids) == 10 and "id34" in ids and "id24" not in ids
    ids.close()
    assert len(path.read_text().splitlines()) <= 20
    reopened = HandledIds(str(path), limit=10)
    assert sorted(reopened._ids) == sorted(f"id{i}" for i in range(25, 35))


def test_a_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"id":"a","archive":{}}\n{"id":"b","arch')
    assert [r["id"] for r in Journal(str(path)).load()] == ["a"]


def test_offset_defaults_to_zero_and_round_trips(tmp_path):
    offset = OffsetFile(str(tmp_path / "state" / "status.offset"))
    assert offset.load() == 0
    offset.save(42)
    assert OffsetFile(offset.path).load() == 42
