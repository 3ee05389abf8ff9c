"""A YOLO dataset cut the way the device cuts each frame (InspectionRegion, PartFinder).

A model trained on whole frames sees the part smaller than one shown the cut-out region, so a
region is trained with before it is switched on. Each image is decoded by the device's decoder and
cut by the device's own `region.crop`; the cut is written losslessly (PNG) so training sees the
device's pixels, and label boxes move into the cut (boxes cut off by more than half are an error:
the region or the finder would hide a labelled defect).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import yaml

from vqi_inference import decode, region

from .evaluate import label_path, read_yolo_labels, split_images

MIN_KEPT = 0.5  # of a label box's area that must stay inside the cut


class CropError(ValueError):
    """A labelled box that the cut would hide; the message names the image."""


def crop_labels(boxes: np.ndarray, classes: np.ndarray, cut: tuple, where: str) -> list[str]:
    """Frame-pixel xyxy boxes -> YOLO lines in the cut's own normalised coordinates."""
    x0, y0, x1, y1 = cut
    w, h = x1 - x0, y1 - y0
    lines = []
    for (bx0, by0, bx1, by1), c in zip(boxes, classes):
        cx0, cy0 = max(bx0, x0), max(by0, y0)
        cx1, cy1 = min(bx1, x1), min(by1, y1)
        area = max(bx1 - bx0, 1e-9) * max(by1 - by0, 1e-9)
        kept = max(0.0, cx1 - cx0) * max(0.0, cy1 - cy0) / area
        if kept < MIN_KEPT:
            raise CropError(f"{where}: the cut {list(cut)} keeps {kept:.0%} of the labelled box "
                            f"{[round(float(v), 1) for v in (bx0, by0, bx1, by1)]}")
        lines.append(f"{int(c)} {((cx0 + cx1) / 2 - x0) / w:.6f} {((cy0 + cy1) / 2 - y0) / h:.6f} "
                     f"{(cx1 - cx0) / w:.6f} {(cy1 - cy0) / h:.6f}")
    return lines


def crop_dataset(data_yaml: Path, out: Path, fixed: Optional[region.Region],
                 find_part: bool) -> dict:
    """Write every split of `data_yaml`, cut, under `out`; returns counts per split."""
    if fixed is None and not find_part:
        raise ValueError("nothing to cut: give a region, the part finder, or both")
    spec = yaml.safe_load(Path(data_yaml).read_text()) or {}
    splits = [k for k in ("train", "val", "test", "clean") if k in spec]
    listed = [k for k in splits if not isinstance(spec[k], str)]
    if listed:
        raise ValueError(f"{data_yaml}: splits {listed} list several folders; cut each dataset "
                         "on its own and list the cut folders in a new YAML")
    counts: dict = {}
    for split in splits:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        n = not_found = 0
        for img in split_images(Path(data_yaml), split):
            frame = decode.decode(decode.read_file(str(img), 1 << 30), 1 << 30)
            h, w = frame.shape[:2]
            cut = region.crop(frame, fixed, find_part)
            outer = region.pixels(fixed, (h, w)) if fixed is not None else None
            not_found += int(find_part and cut == outer)  # the finder gave the fixed cut back
            cut = cut or (0, 0, w, h)
            boxes, classes = read_yolo_labels(label_path(img), w, h)
            lines = crop_labels(boxes, classes, cut, str(img))
            if not cv2.imwrite(str(out / "images" / split / f"{img.stem}.png"),
                               frame[cut[1]:cut[3], cut[0]:cut[2]]):
                raise OSError(f"could not write the cut of {img}")
            (out / "labels" / split / f"{img.stem}.txt").write_text(
                "".join(line + "\n" for line in lines))
            n += 1
        counts[split] = {"images": n, "part_not_found": not_found} if find_part else {"images": n}
    cut_rule = {"inspection_region": list(fixed) if fixed else [], "part_finder": find_part,
                "from": str(Path(data_yaml).resolve())}
    meta = {k: v for k, v in spec.items() if k not in ("path", *splits)}
    meta.update({"path": str(out.resolve()), **{s: f"images/{s}" for s in splits},
                 "vqi_cut": cut_rule})
    (out / "data.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return {"counts": counts, **cut_rule, "data": str((out / "data.yaml").resolve())}
