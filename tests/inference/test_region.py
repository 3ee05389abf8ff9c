"""InspectionRegion: only the configured part of the frame is inspected; boxes in frame pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.config import ConfigError
from vqi_inference import model as M
from vqi_inference import pipeline as P
from vqi_inference import region, settings

from .helpers import textured_image, write_image


def test_an_empty_region_is_the_whole_frame() -> None:
    assert region.parse([]) is None


@pytest.mark.parametrize("bad", [[0.5, 0.5, 0.6, 0.2], [0, 0, 0, 1], [-0.1, 0, 0.5, 0.5],
                                 [0, 0, 1], [0, 0, "1", 1], [0, 0, True, 1]])
def test_a_region_that_does_not_fit_the_frame_is_refused(bad: list) -> None:
    with pytest.raises(ValueError):
        region.parse(bad)
    with pytest.raises(ConfigError, match="InspectionRegion"):
        settings.parse({"InspectionRegion": bad})


def test_region_pixels_round_outwards_and_keep_at_least_one_pixel() -> None:
    # 450x300 frame: x 0.05..0.98 -> 22.5..441 -> 22..441; y 0.1..0.97 -> 30..291
    assert region.pixels((0.05, 0.10, 0.93, 0.87), (300, 450)) == (22, 30, 441, 291)
    assert region.pixels((0.999, 0.999, 0.001, 0.001), (10, 10)) == (9, 9, 10, 10)


def test_boxes_move_from_region_to_frame_pixels() -> None:
    boxes = np.array([[1.0, 2.0, 11.0, 12.0]], np.float32)
    assert region.to_frame(boxes, (22, 30, 441, 291)).tolist() == [[23.0, 32.0, 33.0, 42.0]]


@pytest.fixture(scope="module")
def loaded(dev_model_dir: Path) -> M.LoadedModel:
    return M.load(str(dev_model_dir), M.SessionSettings(intra_op_threads=1))


def test_a_region_inspects_exactly_what_a_cut_out_image_would_show(
        loaded: M.LoadedModel, tmp_path: Path) -> None:
    # Reference: the region cut out and saved as its own (lossless) image, run through the
    # same path, boxes shifted by hand. The region run on the whole frame must agree.
    frame = textured_image(300, 450, seed=11)
    full = write_image(tmp_path / "frame.png", frame)
    x0, y0, x1, y1 = 22, 30, 441, 291
    cut = write_image(tmp_path / "cut.png", np.ascontiguousarray(frame[y0:y1, x0:x1]))
    thresholds = settings.resolve(settings.parse({"ConfidenceThreshold": 0.01}),
                                  loaded.spec).thresholds
    runner = P.Runner(loaded)
    whole = runner.run_one(P.Job("f", str(full)),
                           P.Limits(thresholds, region=(0.05, 0.10, 0.93, 0.87)))
    alone = runner.run_one(P.Job("c", str(cut)), P.Limits(thresholds))
    assert whole.orig_hw == (300, 450) and alone.orig_hw == (261, 419)
    assert whole.detections is not None and alone.detections is not None
    assert len(alone.detections.scores) > 0
    np.testing.assert_allclose(whole.detections.boxes,
                               alone.detections.boxes + np.float32([x0, y0, x0, y0]), atol=1e-3)
    np.testing.assert_allclose(whole.detections.scores, alone.detections.scores, atol=1e-6)


def test_the_region_is_a_live_setting(loaded: M.LoadedModel) -> None:
    config = settings.parse({"InspectionRegion": [0.1, 0.1, 0.8, 0.8]})
    assert config.inspection_region == [0.1, 0.1, 0.8, 0.8]
    assert "inspection_region" in settings.LIVE_FIELDS
