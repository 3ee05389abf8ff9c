"""scripts/model import-groundtruth: SageMaker Ground Truth boxes to a YOLO dataset, split by
camera frame with no leak. Images, labels.csv files and manifests are made by the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest
import yaml

from vqitools.model import groundtruth as gt

ROOT = Path(__file__).resolve().parents[2]
CROPS = ("left-top", "left-bottom", "right-top", "right-bottom")


def frame_name(minute: int, crop: str) -> str:
    return f"image-2020-04-22-10-{minute:02d}-14-06-cropped-{crop}.jpg"


def write_images(folder: Path, names: List[str], size=(300, 450)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, name in enumerate(names):
        image = np.full((*size, 3), 60 + n % 50, np.uint8)
        assert cv2.imwrite(str(folder / name), image)


def labels_csv(path: Path, rows: Dict[str, list], folder: str = "bad") -> Path:
    lines = ["source_ref,image_width,image_height,image_depth,annotations,event_time,"
             "labeling_job,status"]
    for name, boxes in rows.items():
        ann = str(boxes).replace('"', "'")
        lines.append(f's3://${{bucket}}/pipeline/assets/images/x/{folder}/{name},450,300,3,'
                     f'"{ann}",1657199072.0,job,APPROVED')
    path.write_text("\n".join(lines) + "\n")
    return path


def box(left: int, top: int, width: int, height: int, class_id: int = 0) -> dict:
    return {"class_id": class_id, "top": top, "left": left, "height": height, "width": width}


def dataset(tmp_path: Path, minutes=range(0, 20), **rule: object) -> Dict[str, object]:
    names = [frame_name(m, c) for m in minutes for c in CROPS]
    write_images(tmp_path / "images" / "bad", names)
    records = gt.read_labels_csv(labels_csv(tmp_path / "labels.csv",
                                            {n: [box(45, 30, 90, 60)] for n in names}))
    return gt.import_dataset(records, tmp_path / "images", tmp_path / "out", ["scratch"],
                             gt.SplitRule(**rule))


def split_frames(out: Path) -> Dict[str, set]:
    return {split: {gt.frame_of(p.name)[0] for p in (out / "images" / split).iterdir()}
            for split in gt.SPLITS}


def test_a_box_becomes_a_normalised_yolo_line(tmp_path: Path) -> None:
    dataset(tmp_path, minutes=[0])
    [label] = (tmp_path / "out" / "labels").rglob(f"{Path(frame_name(0, 'left-top')).stem}.txt")
    # left 45, top 30, 90x60 in 450x300: centre (90, 60) -> 0.2, 0.2; size 0.2 x 0.2
    assert label.read_text() == "0 0.200000 0.200000 0.200000 0.200000\n"


def test_crops_of_one_frame_share_a_split_and_late_frames_are_test(tmp_path: Path) -> None:
    summary = dataset(tmp_path, test_from=datetime(2020, 4, 22, 10, 15))
    frames = split_frames(tmp_path / "out")
    for a in gt.SPLITS:
        for b in gt.SPLITS:
            assert a == b or not frames[a] & frames[b]
    assert len(frames["test"]) == 5 and summary["images"]["test"] == 20
    assert all(gt.frame_of(f)[1] >= datetime(2020, 4, 22, 10, 15) for f in frames["test"])
    assert all(gt.frame_of(f)[1] < datetime(2020, 4, 22, 10, 15)
               for f in frames["train"] | frames["val"])
    assert frames["val"] and frames["train"]


def test_without_a_cutoff_the_newest_frames_are_test(tmp_path: Path) -> None:
    dataset(tmp_path, test_fraction=0.25)
    newest = {gt.frame_of(frame_name(m, "left-top"))[0] for m in range(15, 20)}
    assert split_frames(tmp_path / "out")["test"] == newest


def test_adding_frames_moves_no_frame_between_train_and_val(tmp_path: Path) -> None:
    cutoff = datetime(2020, 4, 22, 11, 0)
    dataset(tmp_path / "a", minutes=range(0, 20), test_from=cutoff, val_fraction=0.3)
    dataset(tmp_path / "b", minutes=range(0, 40), test_from=cutoff, val_fraction=0.3)
    small, large = split_frames(tmp_path / "a" / "out"), split_frames(tmp_path / "b" / "out")
    assert small["val"] and small["val"] <= large["val"] and small["train"] <= large["train"]


def test_the_split_rule_is_written_into_data_yaml(tmp_path: Path) -> None:
    dataset(tmp_path, test_from=datetime(2020, 4, 22, 10, 15))
    data = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert data["names"] == {0: "scratch"} and data["train"] == "images/train"
    assert data["vqi_split"]["test_from"] == "2020-04-22T10:15:00"
    assert "crops of one image-<timestamp> frame share a split" in data["vqi_split"]["rule"]


def test_defect_free_images_are_kept_out_of_training_even_with_boxes_drawn(
        tmp_path: Path) -> None:
    bad = [frame_name(m, c) for m in range(10) for c in CROPS]
    good = [frame_name(30, c) for c in CROPS]
    write_images(tmp_path / "images" / "bad", bad)
    write_images(tmp_path / "images" / "good", good)
    rows = {n: [box(45, 30, 90, 60)] for n in bad}
    rows[good[0]] = [box(10, 10, 20, 20)]  # a labeller's faint mark on a good part
    rows[good[1]] = []
    records = gt.read_labels_csv(labels_csv(tmp_path / "labels.csv", rows))
    summary = gt.import_dataset(records, tmp_path / "images", tmp_path / "out", ["scratch"],
                                gt.SplitRule(test_fraction=0.2),
                                sorted((tmp_path / "images" / "good").iterdir()))
    clean = sorted(p.name for p in (tmp_path / "out" / "images" / "clean").iterdir())
    assert clean == sorted(good) and summary["defect_free_with_boxes_dropped"] == 1
    assert all((tmp_path / "out" / "labels" / "clean" / Path(n).with_suffix(".txt").name)
               .read_text() == "" for n in good)
    assert not set(good) & {p.name for p in (tmp_path / "out" / "images" / "train").iterdir()}


def manifest(path: Path, names: List[str], class_map: Dict[str, str], boxes: list) -> Path:
    lines = []
    for name in names:
        lines.append(json.dumps({
            "source-ref": f"s3://bucket/raw/{name}",
            "tags": {"annotations": boxes, "image_size": [{"width": 450, "height": 300,
                                                           "depth": 3}]},
            "tags-metadata": {"class-map": class_map, "type": "groundtruth/object-detection",
                              "human-annotated": "yes"}}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_output_manifest_is_read_with_its_class_map(tmp_path: Path) -> None:
    names = [frame_name(0, c) for c in CROPS]
    write_images(tmp_path / "images", names)
    records, class_map = gt.read_manifest(
        manifest(tmp_path / "out.manifest", names, {"0": "scratch"}, [box(0, 0, 450, 300)]))
    assert class_map == {0: "scratch"} and len(records) == 4
    assert records[0].boxes == [gt.Box(0, 0.0, 0.0, 450.0, 300.0)]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "model"), "import-groundtruth",
                           *args], capture_output=True, text=True, timeout=120)


def test_a_manifest_whose_classes_differ_from_the_given_ones_is_refused(tmp_path: Path) -> None:
    names = [frame_name(0, "left-top")]
    write_images(tmp_path / "images", names)
    labels = manifest(tmp_path / "m.manifest", names, {"0": "dent"}, [box(1, 1, 9, 9)])
    res = cli("--labels", str(labels), "--images", str(tmp_path / "images"), "--out",
              str(tmp_path / "out"))
    assert res.returncode == 2 and "class 0 is 'dent'" in res.stderr and "scratch" in res.stderr


@pytest.mark.parametrize("problem, rows, message", [
    ("missing image", {frame_name(9, "left-top"): []}, "image not found"),
    ("unknown class", {frame_name(0, "left-top"): [box(1, 1, 9, 9, class_id=3)]},
     "unknown class id 3"),
    ("box outside", {frame_name(0, "left-top"): [box(400, 250, 80, 30)]},
     "outside the 450x300 image"),
])
def test_bad_labels_are_refused_naming_the_image(tmp_path: Path, problem: str, rows: dict,
                                                 message: str) -> None:
    write_images(tmp_path / "images", [frame_name(0, "left-top")])
    res = cli("--labels", str(labels_csv(tmp_path / "labels.csv", rows)), "--images",
              str(tmp_path / "images"), "--out", str(tmp_path / "out"))
    assert res.returncode == 2, problem
    assert message in res.stderr and list(rows)[0] in res.stderr
    assert not (tmp_path / "out" / "data.yaml").exists()


def test_an_image_without_a_frame_time_is_refused(tmp_path: Path) -> None:
    write_images(tmp_path / "images", ["photo.jpg"])
    with pytest.raises(gt.LabelError, match="frame time"):
        gt.import_dataset(gt.read_labels_csv(labels_csv(tmp_path / "l.csv", {"photo.jpg": []})),
                          tmp_path / "images", tmp_path / "out", ["scratch"])
