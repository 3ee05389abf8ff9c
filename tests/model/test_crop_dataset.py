"""scripts/model crop: a dataset cut as the device cuts frames, labels moved into the cut."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tests.inference.test_part_finder import fixture_frame
from vqi_inference import region
from vqitools.model.crop import CropError, crop_dataset, crop_labels

ROOT = Path(__file__).resolve().parents[2]


def yolo_dataset(root: Path, n: int = 3) -> Path:
    """Frames with a tag (found by the part finder) and one labelled scratch each."""
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            frame, _ = fixture_frame(seed=i)
            assert cv2.imwrite(str(root / "images" / split / f"f{i}.png"), frame)
            # the scratch drawn by fixture_frame: (120, 200) to (330, 230), as a YOLO line
            (root / "labels" / split / f"f{i}.txt").write_text(
                f"0 {225 / 450:.6f} {215 / 300:.6f} {214 / 450:.6f} {34 / 300:.6f}\n")
    (root / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(root), "train": "images/train", "val": "images/val",
         "names": {0: "scratch"}, "vqi_split": {"rule": "test rule"}}))
    return root / "data.yaml"


def test_labels_move_into_the_cut_and_stay_on_the_same_pixels() -> None:
    boxes = np.array([[120.0, 200.0, 330.0, 230.0]])
    (line,) = crop_labels(boxes, np.array([0]), (20, 28, 430, 292), "f.png")
    cls, cx, cy, w, h = (float(v) for v in line.split())
    assert cls == 0
    assert (cx * 410 + 20, cy * 264 + 28) == pytest.approx((225.0, 215.0), abs=1e-3)
    assert (w * 410, h * 264) == pytest.approx((210.0, 30.0), abs=1e-3)


def test_a_box_the_cut_would_mostly_hide_is_an_error_that_names_the_image() -> None:
    with pytest.raises(CropError, match="f.png.*keeps 25%"):
        crop_labels(np.array([[0.0, 0.0, 40.0, 40.0]]), np.array([0]), (20, 20, 100, 100),
                    "f.png")


def test_the_cut_dataset_holds_the_device_cut_pixels_and_its_rule(tmp_path: Path) -> None:
    data = yolo_dataset(tmp_path / "src")
    result = crop_dataset(data, tmp_path / "cut", None, True)
    assert result["counts"]["train"] == {"images": 3, "part_not_found": 0}
    meta = yaml.safe_load((tmp_path / "cut" / "data.yaml").read_text())
    assert meta["vqi_cut"]["part_finder"] is True and meta["vqi_split"] == {"rule": "test rule"}
    assert meta["train"] == "images/train" and meta["path"] == str((tmp_path / "cut").resolve())
    frame = cv2.imread(str(tmp_path / "src" / "images" / "val" / "f1.png"))
    x0, y0, x1, y1 = region.crop(frame, None, True)
    cut = cv2.imread(str(tmp_path / "cut" / "images" / "val" / "f1.png"))
    np.testing.assert_array_equal(cut, frame[y0:y1, x0:x1])  # lossless, the device's pixels
    (line,) = (tmp_path / "cut" / "labels" / "val" / "f1.txt").read_text().splitlines()
    _, cx, cy, w, h = (float(v) for v in line.split())
    cw, ch = x1 - x0, y1 - y0  # back in frame pixels: the scratch's box as labelled
    assert [(cx - w / 2) * cw + x0, (cy - h / 2) * ch + y0, (cx + w / 2) * cw + x0,
            (cy + h / 2) * ch + y0] == pytest.approx([118, 198, 332, 232], abs=0.01)


def test_a_split_that_lists_several_folders_is_refused(tmp_path: Path) -> None:
    data = yolo_dataset(tmp_path / "src")
    spec = yaml.safe_load(data.read_text())
    spec["train"] = ["images/train", "images/val"]
    data.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="list several folders"):
        crop_dataset(data, tmp_path / "cut", None, True)


def test_nothing_to_cut_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to cut"):
        crop_dataset(yolo_dataset(tmp_path / "src"), tmp_path / "cut", None, False)


@pytest.mark.toolchain  # scripts/model checks for the whole toolchain before any subcommand
def test_the_command_cuts_by_a_fixed_region(tmp_path: Path) -> None:
    data = yolo_dataset(tmp_path / "src", n=1)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "model"), "crop", "--data",
                          str(data), "--out", str(tmp_path / "cut"), "--region",
                          "0.1,0.1,0.8,0.8"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["inspection_region"] == [0.1, 0.1, 0.8, 0.8]
    assert cv2.imread(str(tmp_path / "cut" / "images" / "train" / "f0.png")).shape == (240, 360, 3)
