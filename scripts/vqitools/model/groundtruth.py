"""SageMaker Ground Truth bounding boxes -> the YOLO dataset layout, split without leaks.

Reads either the `labels.csv` export (columns source_ref, image_width, image_height, annotations;
annotations a list of {class_id, top, left, height, width}) or a Ground Truth output manifest
(JSON lines: `source-ref`, `<attribute>: {image_size, annotations}`, `<attribute>-metadata` with
the class map). Images are found under a local folder by the tail of their S3 key.

The split is by camera frame: the crops of one frame (same `image-<timestamp>` prefix) always share
a split. Frames at or after `test_from` (default: the newest `test_fraction` of frames) are TEST,
never used to train, validate or choose anything; of the earlier frames a fixed `val_fraction`
(chosen by a hash of the frame id, so adding frames moves no other frame) is VAL; the rest TRAIN.
Defect-free images (labelled with no box, or in the --defect-free folder, whose word wins over
boxes drawn on them) go to their own CLEAN split, kept out of training to measure false alarms.
The rule is written into data.yaml.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import yaml

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SPLITS = ("train", "val", "test", "clean")
FRAME = re.compile(r"(image-(\d{4})-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)(?:-(\d+))?)")
BOX_TOLERANCE_PX = 1  # Ground Truth boxes may touch the border; more than this is an error


class LabelError(ValueError):
    """Labels that cannot become a dataset; the message names the image and what is wrong."""


@dataclass(frozen=True)
class Box:
    class_id: int
    left: float
    top: float
    width: float
    height: float


@dataclass
class Record:
    source: str  # the S3 key or path the labels name
    width: int
    height: int
    boxes: List[Box] = field(default_factory=list)


def _box(raw: dict, where: str) -> Box:
    try:
        return Box(int(raw["class_id"]), float(raw["left"]), float(raw["top"]),
                   float(raw["width"]), float(raw["height"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise LabelError(f"{where}: annotation {raw!r} needs class_id, left, top, width, height"
                         ) from exc


def read_labels_csv(path: Path) -> List[Record]:
    records = []
    with open(path, newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            where = f"{path.name}:{line}"
            try:
                annotations = ast.literal_eval(row["annotations"] or "[]")
                width, height = int(row["image_width"]), int(row["image_height"])
                source = row["source_ref"]
            except (KeyError, ValueError, SyntaxError) as exc:
                raise LabelError(f"{where}: needs source_ref, image_width, image_height and a "
                                 f"list of annotations ({exc})") from exc
            if not isinstance(annotations, list):
                raise LabelError(f"{where}: annotations must be a list")
            records.append(Record(source, width, height, [_box(a, where) for a in annotations]))
    return records


def read_manifest(path: Path, attribute: Optional[str] = None
                  ) -> Tuple[List[Record], Dict[int, str]]:
    """Records and the class map of a Ground Truth object-detection output manifest."""
    records: List[Record] = []
    class_map: Dict[int, str] = {}
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path.name}:{line}"
        try:
            entry = json.loads(text)
        except ValueError as exc:
            raise LabelError(f"{where}: not JSON ({exc})") from exc
        name = attribute or next((k for k in entry if isinstance(entry.get(k), dict)
                                  and "annotations" in entry[k]), None)
        if name is None or not isinstance(entry.get(name), dict):
            raise LabelError(f"{where}: no bounding-box attribute"
                             + (f" {attribute!r}" if attribute else ""))
        result = entry[name]
        meta = entry.get(f"{name}-metadata") or {}
        for key, value in (meta.get("class-map") or {}).items():
            class_map[int(key)] = str(value)
        size = (result.get("image_size") or [{}])[0]
        if "source-ref" not in entry or "width" not in size or "height" not in size:
            raise LabelError(f"{where}: needs source-ref and image_size width/height")
        records.append(Record(entry["source-ref"], int(size["width"]), int(size["height"]),
                              [_box(a, where) for a in result.get("annotations") or []]))
    return records, class_map


def frame_of(name: str) -> Tuple[str, datetime]:
    """The camera frame a crop comes from and its time, from `image-YYYY-MM-DD-HH-MM-SS[-cc]`."""
    match = FRAME.search(Path(name).name)
    if not match:
        raise LabelError(f"{name}: no image-<YYYY-MM-DD-HH-MM-SS> frame time in the name; the "
                         "split keeps the crops of one frame together, so it needs it")
    y, mo, d, h, mi, s = (int(g) for g in match.groups()[1:7])
    centis = int(match.group(8) or 0)
    return match.group(1), datetime(y, mo, d, h, mi, s, min(centis, 99) * 10000)


def _fraction_of(frame: str, seed: str) -> float:
    digest = hashlib.sha256(f"{seed}\0{frame}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


@dataclass(frozen=True)
class SplitRule:
    test_from: Optional[datetime] = None
    test_fraction: float = 0.2
    val_fraction: float = 0.15
    seed: str = "vqi"

    def describe(self, cutoff: datetime) -> str:
        return (f"by camera frame (crops of one image-<timestamp> frame share a split): frames at "
                f"or after {cutoff.isoformat()} are test; of the earlier frames those whose "
                f"sha256('{self.seed}\\0<frame>') falls below {self.val_fraction} are val (at "
                "least the lowest one), the rest train; defect-free images are clean (never "
                "trained on)")


def assign(frames: Dict[str, datetime], rule: SplitRule) -> Tuple[Dict[str, str], datetime]:
    """Frame -> split, and the test cutoff used."""
    if not frames:
        raise LabelError("no labelled images")
    ordered = sorted(frames.values())
    cutoff = rule.test_from or ordered[min(len(ordered) - 1,
                                           int(len(ordered) * (1 - rule.test_fraction)))]
    out = {}
    for frame, when in frames.items():
        if when >= cutoff:
            out[frame] = "test"
        elif _fraction_of(frame, rule.seed) < rule.val_fraction:
            out[frame] = "val"
        else:
            out[frame] = "train"
    train = [f for f, split in out.items() if split == "train"]
    if "val" not in out.values() and len(train) > 1:  # a small set still gets one val frame
        out[min(train, key=lambda f: _fraction_of(f, rule.seed))] = "val"
    return out, cutoff


def _index(images: Path) -> Dict[str, List[Path]]:
    found: Dict[str, List[Path]] = {}
    for path in images.rglob("*"):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.setdefault(path.name, []).append(path)
    return found


def locate(source: str, index: Dict[str, List[Path]]) -> Path:
    """The local file for an S3 key: the one whose path ends like the key (basename first)."""
    parts = [p for p in re.sub(r"^s3://", "", source).split("/") if p]
    candidates = index.get(parts[-1] if parts else "", [])
    if not candidates:
        raise LabelError(f"{source}: image not found under the images folder")
    if len(candidates) == 1:
        return candidates[0]
    best = max(candidates, key=lambda c: sum(1 for a, b in zip(reversed(c.parts),
                                                                 reversed(parts)) if a == b))
    return best


def _yolo_lines(record: Record, where: str, nc: int) -> List[str]:
    lines = []
    for b in record.boxes:
        if not 0 <= b.class_id < nc:
            raise LabelError(f"{where}: unknown class id {b.class_id} (classes: 0..{nc - 1})")
        x2, y2 = b.left + b.width, b.top + b.height
        t = BOX_TOLERANCE_PX
        if (b.width <= 0 or b.height <= 0 or b.left < -t or b.top < -t
                or x2 > record.width + t or y2 > record.height + t):
            raise LabelError(f"{where}: box left {b.left} top {b.top} width {b.width} height "
                             f"{b.height} is outside the {record.width}x{record.height} image")
        x1, y1 = max(b.left, 0.0), max(b.top, 0.0)
        x2, y2 = min(x2, record.width), min(y2, record.height)
        cx, cy = (x1 + x2) / 2 / record.width, (y1 + y2) / 2 / record.height
        w, h = (x2 - x1) / record.width, (y2 - y1) / record.height
        lines.append(f"{b.class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def import_dataset(records: Sequence[Record], images: Path, out: Path, classes: Sequence[str],
                   rule: SplitRule = SplitRule(),
                   defect_free: Iterable[Path] = ()) -> Dict[str, object]:
    """Write out/images/<split>, out/labels/<split>, data.yaml (with the split rule) and
    dataset.json; returns the summary written to dataset.json."""
    import cv2

    index = _index(images)
    nc = len(classes)
    clean = {p.name for p in defect_free}
    overridden = 0
    planned: List[Tuple[Path, List[str], str]] = []  # image, label lines, frame
    seen: Dict[str, Path] = {}
    for record in records:
        path = locate(record.source, index)
        where = f"{path.name}"
        if path.name in seen:
            raise LabelError(f"{where}: labelled twice")
        seen[path.name] = path
        shape = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if shape is None:
            raise LabelError(f"{where}: not a readable image")
        if (shape.shape[1], shape.shape[0]) != (record.width, record.height):
            raise LabelError(f"{where}: labels are for {record.width}x{record.height}, the image "
                             f"is {shape.shape[1]}x{shape.shape[0]}")
        lines = _yolo_lines(record, where, nc)
        if path.name in clean:  # known defect-free: the clean split, whatever was drawn on it
            overridden += bool(lines)
            lines = []
        planned.append((path, lines, frame_of(path.name)[0]))
    for path in defect_free:
        if path.name not in seen:
            seen[path.name] = path
            planned.append((path, [], frame_of(path.name)[0]))
    frames = {frame: frame_of(p.name)[1] for p, lines, frame in planned if lines}
    split_of, cutoff = assign(frames, rule)
    out = out.resolve()
    for split in SPLITS:
        shutil.rmtree(out / "images" / split, ignore_errors=True)
        shutil.rmtree(out / "labels" / split, ignore_errors=True)
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
    counts = {s: 0 for s in SPLITS}
    boxes = {s: 0 for s in SPLITS}
    frame_splits: Dict[str, set] = {s: set() for s in SPLITS}
    for path, lines, frame in planned:
        split = split_of[frame] if lines else "clean"
        shutil.copyfile(path, out / "images" / split / path.name)
        (out / "labels" / split / path.with_suffix(".txt").name).write_text(
            "".join(line + "\n" for line in lines))
        counts[split] += 1
        boxes[split] += len(lines)
        frame_splits[split].add(frame)
    summary: Dict[str, object] = {
        "generator": "vqitools.model.groundtruth", "rule": rule.describe(cutoff),
        "test_from": cutoff.isoformat(), "val_fraction": rule.val_fraction, "seed": rule.seed,
        "images": counts, "boxes": boxes,
        "frames": {s: len(f) for s, f in frame_splits.items()},
        "defect_free_with_boxes_dropped": overridden,
    }
    data = {"path": str(out), **{s: f"images/{s}" for s in SPLITS},
            "names": dict(enumerate(classes)), "vqi_split": summary}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (out / "dataset.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
