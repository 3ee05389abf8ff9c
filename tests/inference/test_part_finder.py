"""PartFinder AUTO: each frame is cut to the part found in it; boxes still in frame pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from shared.config import ConfigError
from vqi_inference import model as M
from vqi_inference import pipeline as P
from vqi_inference import region, settings

from .helpers import DEMO_MODEL, write_image


def fixture_frame(h: int = 300, w: int = 450, seed: int = 0) -> tuple[np.ndarray, tuple]:
    """A dark grey rounded tag on a bright fixture, a grey clamp block joining it to the top
    edge (the real sample's layout), stamped text and a bright scratch; and the tag's box."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 235, np.uint8)
    x0, y0, x1, y1 = 20, 28, 430, 292
    cv2.rectangle(img, (x0 + 12, y0), (x1 - 12, y1), (105, 105, 105), -1)
    cv2.rectangle(img, (x0, y0 + 12), (x1, y1 - 12), (105, 105, 105), -1)
    for cx, cy in ((x0 + 12, y0 + 12), (x1 - 12, y0 + 12), (x0 + 12, y1 - 12), (x1 - 12, y1 - 12)):
        cv2.circle(img, (cx, cy), 12, (105, 105, 105), -1)
    cv2.rectangle(img, (150, 0), (300, y0 + 2), (120, 120, 120), -1)  # the clamp block
    cv2.circle(img, (45, 50), 9, (250, 250, 250), -1)  # the punched hole
    cv2.putText(img, "LOT 42", (60, 150), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (70, 70, 70), 3)
    cv2.line(img, (120, 200), (330, 230), (240, 240, 240), 2)
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8), (x0, y0, x1, y1)


def rotated_tag(h: int = 320, w: int = 320, angle: float = 25.0) -> tuple[np.ndarray, tuple]:
    """A bright tag turned by `angle` on a dark background (the synthetic demo's layout)."""
    img = np.full((h, w, 3), 45, np.uint8)
    rect = ((w / 2 + 10, h / 2 - 5), (190, 120), angle)
    corners = cv2.boxPoints(rect).astype(np.int32)
    cv2.fillPoly(img, [corners], (190, 190, 190))
    cv2.putText(img, "AB12", (120, 160), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (60, 60, 60), 2)
    x, y, bw, bh = cv2.boundingRect(corners)
    return img, (x, y, x + bw, y + bh)


def contains(outer: tuple, inner: tuple) -> bool:
    return (outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2]
            and outer[3] >= inner[3])


def test_the_tag_is_found_without_the_clamp_that_touches_it() -> None:
    frame, tag = fixture_frame()
    found = region.find_part(frame)
    assert found is not None
    assert contains(found, tag)  # nothing of the tag is cut off
    # and little else: the margin is 4 % of the tag's size a side, plus the small copy's rounding
    assert found[1] >= tag[1] - 0.04 * (tag[3] - tag[1]) - 4 > 0  # the clamp above is left out
    assert (found[2] - found[0]) <= 1.08 * (tag[2] - tag[0]) + 6


def test_a_turned_tag_is_found_whole_corners_included() -> None:
    frame, tag = rotated_tag()
    found = region.find_part(frame)
    assert found is not None and contains(found, tag)
    assert (found[2] - found[0]) * (found[3] - found[1]) < 0.7 * 320 * 320


@pytest.mark.parametrize("frame", [np.full((300, 450, 3), 128, np.uint8),
                                   np.random.default_rng(3).integers(0, 256, (300, 450, 3),
                                                                     dtype=np.uint8)],
                         ids=["flat", "noise"])
def test_no_part_in_the_frame_means_the_whole_frame_or_fixed_region_is_inspected(
        frame: np.ndarray) -> None:
    assert region.find_part(frame) is None
    assert region.crop(frame, None, True) is None
    assert region.crop(frame, (0.1, 0.1, 0.5, 0.5), True) == (45, 30, 270, 180)


def test_the_part_is_looked_for_inside_the_fixed_region() -> None:
    frame, tag = fixture_frame()
    wide = np.full((300, 900, 3), 235, np.uint8)
    cv2.rectangle(wide, (10, 10), (440, 290), (90, 90, 90), -1)  # a larger decoy on the left
    wide[:, 450:] = frame  # the tag in the right half; a fixed region keeps to that half
    assert region.find_part(wide)[0] < 450  # unfenced, the finder takes the decoy
    cut = region.crop(wide, (0.5, 0.0, 0.5, 1.0), True)
    assert cut is not None and cut[0] >= 450
    assert contains(cut, (tag[0] + 450, tag[1], tag[2] + 450, tag[3]))


def test_grey_and_single_channel_frames_are_searched_like_colour_ones() -> None:
    frame, tag = fixture_frame()
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert region.find_part(grey) == region.find_part(grey[:, :, None]) == region.find_part(frame)


@pytest.mark.parametrize("hw", [(1, 1), (5, 400), (400, 5)])
def test_a_frame_too_small_to_search_has_no_part(hw: tuple) -> None:
    assert region.find_part(np.zeros((*hw, 3), np.uint8)) is None


def test_a_large_frame_is_searched_at_the_same_place() -> None:
    frame, tag = fixture_frame()
    big = cv2.resize(frame, (450 * 8, 300 * 8), interpolation=cv2.INTER_NEAREST)
    found = region.find_part(big)
    assert found is not None and contains(found, tuple(v * 8 for v in tag))
    np.testing.assert_allclose(found, [v * 8 for v in region.find_part(frame)], atol=24)


def test_part_finder_takes_only_off_or_auto_and_is_live() -> None:
    assert settings.parse({}).part_finder == "OFF"
    assert settings.parse({"PartFinder": "AUTO"}).part_finder == "AUTO"
    with pytest.raises(ConfigError, match="PartFinder"):
        settings.parse({"PartFinder": "yes"})
    assert "part_finder" in settings.LIVE_FIELDS


@pytest.fixture(scope="module")
def loaded() -> M.LoadedModel:
    return M.load(str(DEMO_MODEL), M.SessionSettings(intra_op_threads=1))


def test_auto_inspects_exactly_what_the_found_part_cut_out_would_show(
        loaded: M.LoadedModel, tmp_path: Path) -> None:
    frame, _ = fixture_frame()
    full = write_image(tmp_path / "frame.png", frame)
    x0, y0, x1, y1 = region.find_part(frame)
    cut = write_image(tmp_path / "cut.png", np.ascontiguousarray(frame[y0:y1, x0:x1]))
    thresholds = settings.resolve(settings.parse({"ConfidenceThreshold": 0.01}),
                                  loaded.spec).thresholds
    runner = P.Runner(loaded)
    whole = runner.run_one(P.Job("f", str(full)), P.Limits(thresholds, find_part=True))
    alone = runner.run_one(P.Job("c", str(cut)), P.Limits(thresholds))
    assert whole.orig_hw == (300, 450)
    assert whole.detections is not None and alone.detections is not None
    assert len(alone.detections.scores) > 0  # the scratch drawn on the tag
    np.testing.assert_allclose(whole.detections.boxes,
                               alone.detections.boxes + np.float32([x0, y0, x0, y0]), atol=1e-3)
    np.testing.assert_allclose(whole.detections.scores, alone.detections.scores, atol=1e-6)
