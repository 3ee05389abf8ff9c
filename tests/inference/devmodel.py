"""A small YOLO detector for tests: exported once per session from ultralytics' yolov8n.yaml.

Random weights (no download). The bias of the class head is shifted so scores are spread over
0..1 instead of sitting near 0.5, which gives a realistic mix of kept and rejected boxes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional

IMGSZ = 320
CLASS_NAMES = ["scratch", "dent", "stain"]


def write_model_json(folder: Path, onnx_name: str, class_names: List[str], imgsz: int,
                     num_boxes: int, extra: Optional[Dict] = None) -> Dict:
    """model.json per the project contract, sha256 computed from the file on disk."""
    onnx_path = folder / onnx_name
    meta = {
        "schema_version": 1, "name": "vqi-test-yolo", "version": "0.0.1", "task": "detect",
        "class_names": class_names, "onnx_file": onnx_name,
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "input": {"name": "images", "shape": [1, 3, imgsz, imgsz], "dtype": "float32",
                  "imgsz": [imgsz, imgsz], "color": "RGB", "layout": "NCHW",
                  "scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1],
                  "letterbox": {"pad_value": 114, "center": True, "scaleup": True, "stride": 32,
                                "auto": False}},
        "output": {"name": "output0", "shape": [1, 4 + len(class_names), num_boxes],
                   "layout": "boxes_first", "box_format": "cxcywh",
                   "coordinates": "input_pixels", "has_objectness": False,
                   "nms_included": False},
        "thresholds": {"confidence": 0.25, "iou": 0.45, "max_detections": 100, "per_class": {}},
        "metrics": {}, "source": {"kind": "test"}, "export": {"imgsz": imgsz},
    }
    meta.update(extra or {})
    (folder / "model.json").write_text(json.dumps(meta, indent=2))
    return meta


def _calibrate_batchnorm(net) -> None:
    """Set BatchNorm statistics from a few random batches so activations do not vanish.

    Untrained YOLO layers shrink activations at every level, so every box would get the same score.
    With calibrated statistics scores depend on the image, like a trained model's.
    """
    import torch

    gen = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(3):
            base = torch.rand(4, 3, IMGSZ // 16, IMGSZ // 16, generator=gen)
            net(torch.nn.functional.interpolate(base, size=(IMGSZ, IMGSZ), mode="bilinear"))
    net.eval()


def build(folder: Path) -> Path:
    """Export the dev model into `folder` (model.onnx + model.json) and return the folder."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    import torch
    from ultralytics import YOLO

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = YOLO("yolov8n.yaml")
    net = model.model
    net.names = dict(enumerate(CLASS_NAMES))
    head = net.model[-1]
    with torch.no_grad():
        # Re-shape the classification branch to len(CLASS_NAMES) outputs and spread its logits.
        for seq in head.cv3:
            last = seq[-1]
            new = torch.nn.Conv2d(last.in_channels, len(CLASS_NAMES), 1)
            torch.nn.init.normal_(new.weight, std=0.005)
            torch.nn.init.uniform_(new.bias, -3.0, -1.0)
            seq[-1] = new
        head.nc = len(CLASS_NAMES)
        head.no = head.nc + head.reg_max * 4
        net.yaml["nc"] = len(CLASS_NAMES)
        _calibrate_batchnorm(net)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        exported = Path(model.export(format="onnx", imgsz=IMGSZ, simplify=True, verbose=False))
        exported = exported if exported.is_absolute() else folder / exported
    finally:
        os.chdir(cwd)
    target = folder / "model.onnx"
    shutil.move(str(exported), target)
    boxes = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))
    write_model_json(folder, "model.onnx", CLASS_NAMES, IMGSZ, num_boxes=boxes)
    return folder
