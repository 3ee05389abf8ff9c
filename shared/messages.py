"""Messages exchanged over Greengrass IPC, as dataclasses with a stable JSON form.

Every message carries a schema version, an image id stable across retries and a UTC time, so
consumers can be idempotent and old/new component versions can coexist during a rollout.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

SCHEMA_VERSION = 1

VERDICT_OK = "OK"
VERDICT_DEFECT = "DEFECT"
VERDICT_ERROR = "ERROR"
VERDICTS = (VERDICT_OK, VERDICT_DEFECT, VERDICT_ERROR)


class MessageError(ValueError):
    """A message that cannot be parsed into the expected dataclass."""


def utc_now() -> str:
    """ISO 8601 UTC time with milliseconds and a Z suffix."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _require(data: Dict[str, Any], key: str, kind: type) -> Any:
    if key not in data:
        raise MessageError(f"missing field {key!r}")
    value = data[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MessageError(f"field {key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _known(cls: type, data: Dict[str, Any]) -> Dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass
class ImageEvent:
    """Published by ImageSource on the image topic: one claimed image file, by path."""

    image_id: str
    path: str
    size: int
    camera_id: str
    capture_time: str
    attempt: int = 1
    time: str = field(default_factory=utc_now)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ImageEvent":
        if not isinstance(data, dict):
            raise MessageError("image event must be a JSON object")
        _require(data, "image_id", str)
        _require(data, "path", str)
        if not data["image_id"]:
            raise MessageError("field 'image_id' must not be empty")
        values = _known(cls, data)
        values.setdefault("size", 0)
        values.setdefault("camera_id", "")
        values.setdefault("capture_time", "")
        return cls(**values)


@dataclass
class Detection:
    """One detected object; box in original image pixels (x1, y1, x2, y2) and normalised 0..1."""

    class_id: int
    class_name: str
    score: float
    box: List[float]
    box_norm: List[float]

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Detection":
        return cls(
            class_id=_require(data, "class_id", int),
            class_name=_require(data, "class_name", str),
            score=_require(data, "score", float),
            box=[float(v) for v in _require(data, "box", list)],
            box_norm=[float(v) for v in _require(data, "box_norm", list)],
        )


@dataclass
class ModelInfo:
    name: str
    version: str
    sha256: str


@dataclass
class InspectionResult:
    """Published by Inference on the results topic: one image's verdict, or why it has none."""

    image_id: str
    path: str
    verdict: str
    detections: List[Detection] = field(default_factory=list)
    model: Optional[ModelInfo] = None
    timings_ms: Dict[str, float] = field(default_factory=dict)
    image_width: int = 0
    image_height: int = 0
    camera_id: str = ""
    error: Optional[str] = None
    thing_name: str = ""
    # What made it besides the model: `component_version`, `config_sha256` of the configuration.
    provenance: Dict[str, str] = field(default_factory=dict)
    time: str = field(default_factory=utc_now)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise MessageError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def top_score(self) -> float:
        return max((d.score for d in self.detections), default=0.0)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "InspectionResult":
        if not isinstance(data, dict):
            raise MessageError("result must be a JSON object")
        _require(data, "image_id", str)
        _require(data, "path", str)
        _require(data, "verdict", str)
        values = _known(cls, data)
        values["detections"] = [Detection.from_dict(d) for d in data.get("detections") or []]
        model = data.get("model")
        values["model"] = ModelInfo(**_known(ModelInfo, model)) if isinstance(model, dict) else None
        return cls(**values)


@dataclass
class ConsumerReady:
    """Published by a consumer (Inference, Uploader) on the ready topic once it is subscribed.

    IPC pub/sub keeps nothing for a subscriber that is not there yet, so events published while a
    consumer was starting are gone; a producer that hears this re-sends what it has in flight at
    once instead of waiting for its result timeout. `instance` is new at every process start.
    """

    component: str
    consumes: str
    instance: str
    time: str = field(default_factory=utc_now)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ConsumerReady":
        if not isinstance(data, dict):
            raise MessageError("ready message must be a JSON object")
        _require(data, "component", str)
        _require(data, "consumes", str)
        values = _known(cls, data)
        values.setdefault("instance", "")
        return cls(**values)


ALERT_RAISED = "RAISED"
ALERT_CLEARED = "CLEARED"
ALERT_WARNING = "WARNING"  # a one-off event that did not stop anything (e.g. AcceptancePolicy WARN)
ALERT_STATES = (ALERT_RAISED, ALERT_CLEARED, ALERT_WARNING)


@dataclass
class Alert:
    """Published on the alerts topic (and to IoT Core): something a person should look at.

    `kind` names the check (`acceptance` for the golden-sample gate); `state` RAISED/CLEARED
    for conditions that hold for a while, WARNING for a one-off event; `details` is the check's
    own evidence (for `acceptance`: samples, failed, failures, elapsed_ms, policy).
    """

    kind: str
    state: str
    component: str
    message: str
    model: Optional[ModelInfo] = None
    details: Dict[str, Any] = field(default_factory=dict)
    thing_name: str = ""
    time: str = field(default_factory=utc_now)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.state not in ALERT_STATES:
            raise MessageError(f"alert state must be one of {ALERT_STATES}, got {self.state!r}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Alert":
        if not isinstance(data, dict):
            raise MessageError("alert must be a JSON object")
        for key in ("kind", "state", "component", "message"):
            _require(data, key, str)
        values = _known(cls, data)
        model = data.get("model")
        values["model"] = ModelInfo(**_known(ModelInfo, model)) if isinstance(model, dict) else None
        return cls(**values)


@dataclass
class ChallengerDisagreement:
    """Published by Inference on the challenger topic when the challenger model disagrees with
    the champion on an image; the Uploader sends the image with both label sets for review.

    `image_path` is a JPEG Inference wrote for this purpose (the camera's file may be gone by
    then); the Uploader deletes it once staged. `champion` and `challenger` are the two
    InspectionResult dicts, `comparison` the per-class matching (challenger.Comparison).
    """

    image_id: str
    image_path: str
    champion: Dict[str, Any]
    challenger: Dict[str, Any]
    comparison: Dict[str, Any]
    thing_name: str = ""
    time: str = field(default_factory=utc_now)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ChallengerDisagreement":
        if not isinstance(data, dict):
            raise MessageError("disagreement must be a JSON object")
        _require(data, "image_id", str)
        _require(data, "image_path", str)
        for key in ("champion", "challenger", "comparison"):
            _require(data, key, dict)
        InspectionResult.from_dict(data["champion"])
        InspectionResult.from_dict(data["challenger"])
        return cls(**_known(cls, data))


FEEDBACK_LABELS = ("confirm", "false_alarm", "missed_defect")
MAX_FEEDBACK_BOXES = 20
MAX_FEEDBACK_COMMENT = 500


def _unit_box(box: Any) -> bool:
    return (isinstance(box, list) and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0
                    for v in box)
            and box[0] < box[2] and box[1] < box[3])


@dataclass
class Feedback:
    """Published by the Dashboard on the feedback topic when an operator judges a result; the
    Uploader sends the image, the model's pre-label and the operator's label for retraining.

    `label`: `confirm` (the model was right), `false_alarm` (nothing is wrong with the part) or
    `missed_defect` (a defect the model missed, optionally with `boxes` the operator drew,
    normalised x1, y1, x2, y2, of class `class_id`). `result` is the InspectionResult judged;
    `image_path` a copy of its image the Dashboard wrote for this purpose (the camera's file
    may be gone by the time it is sent), which the Uploader deletes once staged.
    """

    feedback_id: str
    image_id: str
    label: str
    image_path: str
    result: Dict[str, Any]
    boxes: List[List[float]] = field(default_factory=list)
    class_id: int = 0
    comment: str = ""
    thing_name: str = ""
    time: str = field(default_factory=utc_now)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.label not in FEEDBACK_LABELS:
            raise MessageError(f"feedback label must be one of {FEEDBACK_LABELS}, "
                               f"got {self.label!r}")
        if not isinstance(self.boxes, list) or len(self.boxes) > MAX_FEEDBACK_BOXES:
            raise MessageError(f"feedback boxes must be a list of at most {MAX_FEEDBACK_BOXES}")
        if self.boxes and self.label != "missed_defect":
            raise MessageError("only a missed_defect feedback carries boxes")
        for box in self.boxes:
            if not _unit_box(box):
                raise MessageError(f"feedback box {box!r} is not x1 < x2, y1 < y2 within 0..1")
        if isinstance(self.class_id, bool) or not isinstance(self.class_id, int) \
                or self.class_id < 0:
            raise MessageError("feedback class_id must be a non-negative integer")
        if not isinstance(self.comment, str) or len(self.comment) > MAX_FEEDBACK_COMMENT:
            raise MessageError(f"feedback comment must be text of at most "
                               f"{MAX_FEEDBACK_COMMENT} characters")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Feedback":
        if not isinstance(data, dict):
            raise MessageError("feedback must be a JSON object")
        for key in ("feedback_id", "image_id", "label", "image_path"):
            _require(data, key, str)
        _require(data, "result", dict)
        InspectionResult.from_dict(data["result"])
        return cls(**_known(cls, data))


def to_json(message: Any) -> str:
    """Compact JSON for a message dataclass."""
    return json.dumps(message.to_dict(), separators=(",", ":"), ensure_ascii=False)
