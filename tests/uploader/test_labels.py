"""YOLO label sidecars."""

from __future__ import annotations

import pytest

from shared.messages import Detection, Feedback, InspectionResult
from vqi_uploader.labels import operator_labels, yolo_labels, yolo_line


def det(class_id: int, box, box_norm, score: float = 0.9) -> Detection:
    return Detection(class_id, f"c{class_id}", score, list(box), list(box_norm))


def test_line_is_class_then_centre_and_size_normalised_with_six_decimals():
    line = yolo_line(det(1, [100, 50, 300, 150], [0.1, 0.1, 0.3, 0.3]))
    assert line == "1 0.200000 0.200000 0.200000 0.200000"


def test_pixel_box_is_used_when_no_normalised_box_is_given():
    line = yolo_line(det(0, [64, 48, 192, 144], []), width=640, height=480)
    assert line == "0 0.200000 0.200000 0.200000 0.200000"


def test_boxes_are_clamped_to_the_image():
    line = yolo_line(det(2, [0, 0, 0, 0], [-0.1, 0.5, 0.5, 1.2]))
    assert line == "2 0.250000 0.750000 0.500000 0.500000"


def test_one_line_per_detection_and_empty_text_for_none():
    dets = [det(0, [0, 0, 1, 1], [0.0, 0.0, 0.5, 0.5]), det(1, [0, 0, 1, 1], [0.5, 0.5, 1, 1])]
    assert yolo_labels(dets) == (
        "0 0.250000 0.250000 0.500000 0.500000\n1 0.750000 0.750000 0.500000 0.500000\n"
    )
    assert yolo_labels([]) == ""


def test_detection_without_any_box_is_an_error():
    with pytest.raises(ValueError):
        yolo_line(det(0, [], []))


def test_a_detection_without_a_box_is_left_out_of_the_file():
    dets = [det(0, [], []), det(1, [0, 0, 1, 1], [0.0, 0.0, 0.5, 0.5])]
    assert yolo_labels(dets) == "1 0.250000 0.250000 0.500000 0.500000\n"


def judged(label: str, boxes: list) -> Feedback:
    found = Detection(class_id=1, class_name="dent", score=0.8, box=[10, 10, 30, 20],
                      box_norm=[0.1, 0.1, 0.3, 0.2])
    result = InspectionResult(image_id="i", path="/i.jpg", verdict="DEFECT", detections=[found],
                              image_width=100, image_height=100).to_dict()
    return Feedback(feedback_id="f" * 32, image_id="i", label=label, image_path="/f/x.jpg",
                    result=result, boxes=boxes, class_id=2)


def test_a_confirmed_result_keeps_the_models_boxes():
    assert operator_labels(judged("confirm", [])) == "1 0.200000 0.150000 0.200000 0.100000\n"


def test_a_false_alarm_is_an_empty_label():
    assert operator_labels(judged("false_alarm", [])) == ""


def test_a_missed_defect_adds_the_drawn_boxes_in_their_class():
    text = operator_labels(judged("missed_defect", [[0.5, 0.5, 0.9, 0.7]]))
    assert text.splitlines() == ["1 0.200000 0.150000 0.200000 0.100000",
                                 "2 0.700000 0.600000 0.400000 0.200000"]
