"""The synthetic generator is a pure function of its seed and writes valid YOLO labels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from vqitools.model.synth import SynthConfig, generate_dataset, render, write_samples


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".jpg", ".txt")}


def test_same_seed_writes_identical_images_and_labels(tmp_path: Path) -> None:
    counts = {"train": 6, "val": 2}
    generate_dataset(tmp_path / "a", 11, counts)
    generate_dataset(tmp_path / "b", 11, counts)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert len(a) == 16
    assert a == b


def test_different_seed_gives_different_images(tmp_path: Path) -> None:
    img_a, _ = render(11, "test", 0)
    img_b, _ = render(12, "test", 0)
    assert img_a.shape == img_b.shape == (320, 320, 3)
    assert not np.array_equal(img_a, img_b)


def test_splits_of_one_seed_do_not_share_images() -> None:
    train, _ = render(11, "train", 0)
    test, _ = render(11, "test", 0)
    assert not np.array_equal(train, test)


def test_labels_are_valid_yolo_boxes_inside_the_image(tmp_path: Path) -> None:
    info = generate_dataset(tmp_path, 3, {"train": 40})
    n_lines = 0
    empty = 0
    for txt in (tmp_path / "labels" / "train").glob("*.txt"):
        rows = [r.split() for r in txt.read_text().splitlines()]
        empty += not rows
        for r in rows:
            n_lines += 1
            assert len(r) == 5 and r[0] == "0"
            cx, cy, w, h = map(float, r[1:])
            assert 0 < w <= 1 and 0 < h <= 1
            assert cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6
            assert cy - h / 2 >= -1e-6 and cy + h / 2 <= 1 + 1e-6
    assert n_lines == info.boxes["train"] > 0
    assert empty > 0, "defect-free images are part of every split"
    assert (tmp_path / "data.yaml").read_text().startswith(f"path: {tmp_path.resolve()}")


def test_box_covers_the_drawn_scratch() -> None:
    cfg = SynthConfig(defect_free_fraction=0.0, scratch_count_weights=(1.0,))
    img, boxes = render(5, "val", 1, cfg)
    base, same_boxes = render(5, "val", 1, cfg, paint_scratches=False)
    assert len(boxes) == 1 and same_boxes == boxes
    diff = np.abs(img.astype(int) - base.astype(int)).max(axis=2) > 25
    ys, xs = np.nonzero(diff)
    b = boxes[0]
    assert len(xs) > 10
    assert xs.min() >= b.x0 and xs.max() < b.x1 and ys.min() >= b.y0 and ys.max() < b.y1
    # tight: the scratch reaches within margin + 2 px of every side of its box
    slack = cfg.box_margin + 2
    assert xs.min() - b.x0 <= slack and b.x1 - 1 - xs.max() <= slack
    assert ys.min() - b.y0 <= slack and b.y1 - 1 - ys.max() <= slack


def test_samples_hold_defective_and_good_images(tmp_path: Path) -> None:
    expected = write_samples(tmp_path, n_defective=2, n_good=2, seed=1)
    assert sorted(expected) == ["defective_01.jpg", "defective_02.jpg", "good_01.jpg",
                                "good_02.jpg"]
    assert all(expected[f"defective_0{i}.jpg"] for i in (1, 2))
    assert not any(expected[f"good_0{i}.jpg"] for i in (1, 2))
    assert (tmp_path / "expected.json").exists()
