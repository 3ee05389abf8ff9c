"""Threaded pipeline: one outcome per job, same detections as the serial path, bounded memory."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest

from vqi_inference import model as M
from vqi_inference import pipeline as P
from vqi_inference import settings

from .helpers import textured_image, write_image


@pytest.fixture(scope="module")
def loaded(dev_model_dir: Path) -> M.LoadedModel:
    return M.load(str(dev_model_dir), M.SessionSettings(intra_op_threads=1))


def limits_for(loaded: M.LoadedModel) -> P.Limits:
    return P.Limits(settings.resolve(settings.parse({}), loaded.spec).thresholds)


def mixed_files(folder: Path, n: int) -> List[Path]:
    paths = []
    for i in range(n):
        kind = i % 5
        if kind == 3:
            path = folder / f"bad{i}.jpg"
            path.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
        elif kind == 4:
            path = folder / f"missing{i}.png"
        else:
            path = write_image(folder / f"ok{i}.jpg", textured_image(200 + 13 * i, 300, seed=i))
        paths.append(path)
    return paths


@pytest.mark.timeout(120)
@pytest.mark.parametrize("decode_threads", [1, 2])
def test_one_outcome_per_job_equal_to_serial(loaded: M.LoadedModel, tmp_path: Path,
                                             decode_threads: int) -> None:
    paths = mixed_files(tmp_path, 25)
    limits = limits_for(loaded)
    outcomes: List[P.Outcome] = []
    pipe = P.Pipeline(loaded, lambda: limits, outcomes.append, decode_threads=decode_threads,
                      prepared_queue=2).start()
    for i, path in enumerate(paths):
        pipe.submit(P.Job(str(i), str(path)))
    pipe.close()
    assert sorted(int(o.job.image_id) for o in outcomes) == list(range(len(paths)))
    serial = P.Runner(loaded)
    for outcome in outcomes:
        expected = serial.run_one(outcome.job, limits)
        if expected.error is not None:
            assert outcome.error is not None and outcome.error.code == expected.error.code
            continue
        assert outcome.error is None
        np.testing.assert_array_equal(outcome.detections.boxes, expected.detections.boxes)
        np.testing.assert_array_equal(outcome.detections.classes, expected.detections.classes)
        assert {"read", "decode", "preprocess", "inference", "postprocess", "total"} <= set(
            outcome.timings_ms)


@pytest.mark.timeout(60)
def test_submit_blocks_when_the_pipeline_is_full(loaded: M.LoadedModel, tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", textured_image(100, 100))
    release = threading.Event()
    limits = limits_for(loaded)
    done: List[P.Outcome] = []

    def slow_consumer(outcome: P.Outcome) -> None:
        release.wait(30)
        done.append(outcome)

    pipe = P.Pipeline(loaded, lambda: limits, slow_consumer, decode_threads=1, prepared_queue=1,
                      pending_queue=3).start()
    accepted = 0
    with pytest.raises(queue.Full):
        for i in range(100):
            pipe.submit(P.Job(str(i), str(path)), timeout=0.5)
            accepted += 1
    # Pending jobs + decode worker + prepared slot + inference + finishing queue + consumer.
    assert accepted < 15
    release.set()
    pipe.close()
    assert len(done) == accepted


@pytest.mark.timeout(60)
def test_threshold_change_applies_to_the_next_image(loaded: M.LoadedModel,
                                                    tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", textured_image(300, 300, seed=5))
    runner = P.Runner(loaded)
    base = settings.resolve(settings.parse({}), loaded.spec)
    strict = settings.resolve(settings.parse({"ConfidenceThreshold": 0.9}), loaded.spec)
    many = runner.run_one(P.Job("a", str(path)), P.Limits(base.thresholds))
    few = runner.run_one(P.Job("a", str(path)), P.Limits(strict.thresholds))
    assert len(few.detections) < len(many.detections)
    assert (few.detections.scores > 0.9).all()


@pytest.mark.timeout(60)
def test_reduced_jpeg_decode_reports_boxes_in_original_pixels(loaded: M.LoadedModel,
                                                              tmp_path: Path) -> None:
    small = textured_image(240, 320, seed=4)
    big = cv2.resize(small, (1280, 960), interpolation=cv2.INTER_NEAREST)
    path = write_image(tmp_path / "big.jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 98])
    base = settings.resolve(settings.parse({}), loaded.spec)
    runner = P.Runner(loaded)
    full = runner.run_one(P.Job("a", str(path)), P.Limits(base.thresholds))
    fast = runner.run_one(P.Job("a", str(path)), P.Limits(base.thresholds, reduced_jpeg=True))
    assert full.orig_hw == fast.orig_hw == (960, 1280)
    assert len(fast.detections) > 0
    boxes = fast.detections.boxes  # in the 1280x960 frame although decoded at 320x240
    assert boxes[:, [0, 2]].max() > 640 and boxes[:, [1, 3]].max() > 480
    assert (boxes >= 0).all()
    assert (boxes[:, [0, 2]] <= 1280).all() and (boxes[:, [1, 3]] <= 960).all()


def test_auto_thread_layout_runs_two_single_threaded_sessions_on_two_cores() -> None:
    auto = settings.parse({})
    assert settings.thread_layout(auto, cpus=2) == (2, 1)
    assert settings.thread_layout(auto, cpus=4) == (2, 2)
    assert settings.thread_layout(auto, cpus=1) == (1, 1)
    fixed = settings.parse({"InferenceThreads": 1, "IntraOpThreads": 3})
    assert settings.thread_layout(fixed, cpus=2) == (1, 3)
