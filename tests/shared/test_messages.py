"""shared.messages: the JSON form every component reads and writes."""

from __future__ import annotations

import json
import re

import pytest

from shared.messages import (
    ConsumerReady,
    ImageEvent,
    InspectionResult,
    MessageError,
    to_json,
    utc_now,
)

RESULT = {
    "image_id": "cam-1/0001", "path": "/data/processing/0001.jpg", "verdict": "DEFECT",
    "detections": [{"class_id": 0, "class_name": "scratch", "score": 0.91,
                    "box": [1, 2, 30, 40], "box_norm": [0.01, 0.02, 0.3, 0.4]}],
    "model": {"name": "tags", "version": "1.0.0", "sha256": "ab" * 32, "extra": "ignored"},
    "timings_ms": {"total": 12.5}, "image_width": 100, "image_height": 100,
    "camera_id": "cam-1", "error": None, "thing_name": "line-7", "time": "2026-01-01T00:00:00Z",
    "schema_version": 1, "from_a_newer_version": True,
}


def test_utc_now_is_iso_8601_with_milliseconds_and_z() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_now())


def test_an_image_event_round_trips_through_json() -> None:
    event = ImageEvent(image_id="a", path="/x.jpg", size=3, camera_id="c", capture_time="t",
                       attempt=2)
    assert ImageEvent.from_dict(json.loads(to_json(event))) == event


def test_an_image_event_needs_a_non_empty_id_and_a_path() -> None:
    for bad in ({"path": "/x"}, {"image_id": "", "path": "/x"}, {"image_id": "a"},
                {"image_id": 7, "path": "/x"}, ["not", "an", "object"]):
        with pytest.raises(MessageError):
            ImageEvent.from_dict(bad)  # type: ignore[arg-type]


def test_an_older_image_event_gets_defaults_for_missing_fields() -> None:
    event = ImageEvent.from_dict({"image_id": "a", "path": "/x.jpg"})
    assert (event.size, event.camera_id, event.capture_time, event.attempt) == (0, "", "", 1)


def test_a_result_keeps_what_it_knows_and_ignores_fields_from_newer_versions() -> None:
    result = InspectionResult.from_dict(RESULT)
    assert result.detections[0].box == [1.0, 2.0, 30.0, 40.0]
    assert result.model is not None and result.model.version == "1.0.0"
    assert result.top_score == 0.91
    again = result.to_dict()
    assert "from_a_newer_version" not in again and "extra" not in again["model"]
    assert InspectionResult.from_dict(again) == result


def test_a_result_with_an_unknown_verdict_is_refused() -> None:
    with pytest.raises(MessageError, match="verdict"):
        InspectionResult.from_dict({**RESULT, "verdict": "MAYBE"})


def test_a_detection_with_a_wrong_type_is_refused() -> None:
    bad = {**RESULT, "detections": [{**RESULT["detections"][0], "class_id": True}]}
    with pytest.raises(MessageError, match="class_id"):
        InspectionResult.from_dict(bad)


def test_a_consumer_ready_message_round_trips_and_tolerates_a_missing_instance() -> None:
    ready = ConsumerReady(component="com.example.vqi.Inference", consumes="vqi/images",
                          instance="abc")
    assert ConsumerReady.from_dict(ready.to_dict()) == ready
    assert ConsumerReady.from_dict({"component": "x", "consumes": "y"}).instance == ""


def _feedback(**changes):
    from shared.messages import Feedback, InspectionResult

    result = InspectionResult(image_id="i", path="/i.jpg", verdict="OK").to_dict()
    values = {"feedback_id": "f" * 32, "image_id": "i", "label": "confirm",
              "image_path": "/w/feedback/x.jpg", "result": result, **changes}
    return Feedback.from_dict(values)


@pytest.mark.parametrize("changes,word", [
    ({"label": "Confirm"}, "label"), ({"boxes": [[0, 0, 1, 1]]}, "only a missed_defect"),
    ({"label": "missed_defect", "boxes": [[0.5, 0, 0.4, 1]]}, "x1 < x2"),
    ({"label": "missed_defect", "boxes": [[0, 0, 1, 1.5]]}, "within 0..1"),
    ({"label": "missed_defect", "boxes": [[0.1, 0.1, 0.2, 0.2]] * 21}, "at most 20"),
    ({"class_id": -1}, "class_id"), ({"class_id": True}, "class_id"),
    ({"comment": "x" * 501}, "comment"), ({"result": {"image_id": "i"}}, "missing field"),
])
def test_feedback_refuses_what_the_uploader_could_not_use(changes, word):
    from shared.messages import MessageError

    with pytest.raises(MessageError, match=word):
        _feedback(**changes)


def test_feedback_round_trips_and_matches_its_schema(assert_valid_message):
    message = _feedback(label="missed_defect", boxes=[[0.1, 0.2, 0.3, 0.4]]).to_dict()
    assert_valid_message("feedback.schema.json", message)
    assert _feedback(**{k: v for k, v in message.items() if k != "schema_version"}).boxes == \
        [[0.1, 0.2, 0.3, 0.4]]
