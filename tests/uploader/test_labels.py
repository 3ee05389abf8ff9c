"""YOLO label sidecars."""

from __future__ import annotations

import pytest

from shared.messages import Detection
from vqi_uploader.labels import yolo_labels, yolo_line


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
