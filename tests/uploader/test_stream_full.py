"""A results stream with StrategyOnFull RejectNewData that is full (README, "Streams"): the append
fails, the uploader confirms nothing it could not store and keeps trying, and once the stream has
room the result is stored and confirmed; nothing is lost and nothing is stored twice.

Real uploader process, real SDKs, the local IPC server and Stream Manager (see rig.py)."""

from __future__ import annotations

import json
import threading
from itertools import count
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from stream_manager import NotEnoughMessagesException, ReadMessagesOptions, StreamManagerClient

from .rig import UPLOADER, Rig, make_result

pytestmark = pytest.mark.timeout(120)

RESULTS_STREAM = "vqi-results"
REFUSED = "is full"  # in the uploader's log when Stream Manager refuses an append


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    made = Rig(tmp_path, monkeypatch, {
        "StrategyOnFull": "RejectNewData", "ResultsStreamMaxBytes": 1024,  # a few results
        "OkSampleRate": 0.0})  # confident OK results only: no review images, one stream in play
    try:
        yield made
    finally:
        made.close()


def stored_ids(client: StreamManagerClient) -> List[str]:
    """The image ids in the results stream, in stream order."""
    try:
        messages = client.read_messages(RESULTS_STREAM, ReadMessagesOptions(
            desired_start_sequence_number=0, min_message_count=1, max_message_count=1000))
    except NotEnoughMessagesException:
        return []
    return [json.loads(m.payload)["image_id"] for m in messages]


def test_a_result_a_full_stream_refuses_is_not_confirmed_and_is_stored_once_there_is_room(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.start_sm()
    rig.start_uploader()
    rig.connect_peer()
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", rig.token)
    client = StreamManagerClient(port=rig.sm_port, request_timeout=20)
    # Each confirmation with what the results stream held when it arrived: a confirmation must
    # never come before its result is stored, whatever the timing.
    arrivals: List[Tuple[str, Dict[str, Any], List[str]]] = []
    lock = threading.Lock()

    def on_archived(message: Dict[str, Any], _topic: str) -> None:
        seen = stored_ids(client)
        with lock:
            arrivals.append((message["image_id"], message["archive"], seen))

    assert rig.peer is not None
    rig.peer.subscribe_json("vqi/archived", on_archived)
    try:
        # Results until one does not fit: the uploader fills the stream itself.
        stored: List[str] = []
        for i in count():
            result = make_result(f"full-{i}", rig.image(f"full-{i}"), "OK", [])
            rig.publish(result)
            rig.wait(lambda r=result: r["image_id"] in rig.confirmed()
                     or REFUSED in rig.log_path.read_text(), 30, "a confirmation or a refusal")
            if REFUSED in rig.log_path.read_text():
                refused = result
                break
            stored.append(result["image_id"])
            assert i < 10, "the stream never filled"
        assert stored, "not even one result fitted"
        rig.publish(refused)  # ImageSource redelivers what stays unconfirmed
        assert stored_ids(client) == stored  # the refused result is not in the stream

        # An operator raises the limit (a deployment's configuration update): room again.
        rig.ipc.update_configuration(UPLOADER, [], {"ResultsStreamMaxBytes": 1 << 20})
        rig.wait(lambda: len(rig.confirmed().get(refused["image_id"], [])) == 2, 60,
                 "both deliveries of the refused result confirmed")
        assert stored_ids(client) == [*stored, refused["image_id"]]  # once, after the others
        with lock:
            for image_id, archive, seen in arrivals:
                assert image_id in seen, f"{image_id} confirmed before it was stored: {archive}"
        first, again = (m["archive"] for m in rig.confirmed()[refused["image_id"]])
        assert first["result_sequence"] == again["result_sequence"] == len(stored)
        assert again.get("duplicate") is True and not first.get("duplicate")
        rig.wait(lambda: rig.kinesis_ids() == [*stored, refused["image_id"]], 30, "the export")
    finally:
        client.close()
