"""Detection mAP of an exported model, measured on the device's own detection path.

Every image goes through the Inference component's `Runner.run_one` (file read, decode,
letterbox, normalisation, session.run, candidate selection, NMS, boxes back in original pixels),
with evaluation thresholds (confidence 0.001, at most 300 boxes), so the model card describes
what the device runs. Only matching and AP live here, in numpy: matching is COCO-style greedy by
score; AP is the 101-point interpolated (COCO) or all-point (VOC 2010+) area under the precision
envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from vqi_inference import model as M
from vqi_inference import region as inspection_region
from vqi_inference.pipeline import Job, Limits, Runner
from vqi_inference.postprocess import Thresholds, box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
EVAL_CONF = 0.001
EVAL_IOU = 0.6
EVAL_MAX_DET = 300


# ----------------------------------------------------------------------------- metric


def match_image(pred_boxes: np.ndarray, pred_scores: np.ndarray, pred_cls: np.ndarray,
                gt_boxes: np.ndarray, gt_cls: np.ndarray,
                iou_thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """True-positive flags [n_pred, n_thr]: greedy by score, each GT matched at most once."""
    n_p, n_t = len(pred_boxes), len(iou_thresholds)
    tp = np.zeros((n_p, n_t), bool)
    if n_p == 0 or len(gt_boxes) == 0:
        return tp
    ious = box_iou(pred_boxes, gt_boxes)
    ious[np.asarray(pred_cls)[:, None] != np.asarray(gt_cls)[None, :]] = 0.0
    order = np.argsort(-np.asarray(pred_scores), kind="stable")
    for t, thr in enumerate(iou_thresholds):
        taken = np.zeros(len(gt_boxes), bool)
        for i in order:
            cand = np.where(~taken & (ious[i] >= thr - 1e-9), ious[i], -1.0)
            j = int(cand.argmax())
            if cand[j] >= 0:
                taken[j] = True
                tp[i, t] = True
    return tp


def average_precision(recall: np.ndarray, precision: np.ndarray, method: str = "coco101",
                      ) -> float:
    """AP from a PR curve ordered by falling score (recall non-decreasing)."""
    rec = np.asarray(recall, np.float64)
    prec = np.asarray(precision, np.float64)
    if method == "coco101":
        if rec.size == 0:
            return 0.0
        envelope = np.maximum.accumulate(prec[::-1])[::-1]  # best precision at recall >= r
        idx = np.searchsorted(rec, np.linspace(0, 1, 101), side="left")
        vals = np.where(idx < rec.size, envelope[np.minimum(idx, rec.size - 1)], 0.0)
        return float(vals.mean())
    if method == "all":
        r = np.concatenate([[0.0], rec, [1.0]])
        p = np.concatenate([[1.0], prec, [0.0]])
        envelope = np.maximum.accumulate(p[::-1])[::-1]
        change = np.where(r[1:] != r[:-1])[0]
        return float(np.sum((r[change + 1] - r[change]) * envelope[change + 1]))
    raise ValueError(f"unknown AP method {method!r}; use 'coco101' or 'all'")


def ap_per_class(tp: np.ndarray, scores: np.ndarray, pred_cls: np.ndarray,
                 gt_cls: np.ndarray, method: str = "coco101") -> dict[int, np.ndarray]:
    """AP [n_thr] for every class that has ground truth (classes without GT are skipped)."""
    tp = np.asarray(tp, bool)
    tp = tp.reshape(len(tp), -1) if tp.ndim == 1 else tp
    scores, pred_cls, gt_cls = map(np.asarray, (scores, pred_cls, gt_cls))
    out: dict[int, np.ndarray] = {}
    for c in np.unique(gt_cls):
        n_gt = int((gt_cls == c).sum())
        m = pred_cls == c
        order = np.argsort(-scores[m], kind="stable")
        tpc = tp[m][order].astype(np.float64)
        ctp = np.cumsum(tpc, axis=0)
        cfp = np.cumsum(1.0 - tpc, axis=0)
        aps = np.zeros(tp.shape[1])
        for t in range(tp.shape[1]):
            if len(order) == 0:
                continue
            recall = ctp[:, t] / n_gt
            precision = ctp[:, t] / np.maximum(ctp[:, t] + cfp[:, t], 1e-12)
            aps[t] = average_precision(recall, precision, method)
        out[int(c)] = aps
    return out


@dataclass
class Accumulator:
    """Collects per-image matches so mAP is computed once over the whole split."""

    tp: list[np.ndarray]
    scores: list[np.ndarray]
    pred_cls: list[np.ndarray]
    gt_cls: list[np.ndarray]

    @classmethod
    def new(cls) -> Accumulator:
        return cls([], [], [], [])

    def add(self, pb: np.ndarray, ps: np.ndarray, pc: np.ndarray, gb: np.ndarray,
            gc: np.ndarray) -> None:
        self.tp.append(match_image(pb, ps, pc, gb, gc))
        self.scores.append(np.asarray(ps, np.float64))
        self.pred_cls.append(np.asarray(pc, np.int64))
        self.gt_cls.append(np.asarray(gc, np.int64))

    def summary(self, method: str = "coco101") -> dict[str, float]:
        tp = np.concatenate(self.tp) if self.tp else np.zeros((0, len(IOU_THRESHOLDS)), bool)
        sc = np.concatenate(self.scores) if self.scores else np.zeros(0)
        pc = np.concatenate(self.pred_cls) if self.pred_cls else np.zeros(0, np.int64)
        gc = np.concatenate(self.gt_cls) if self.gt_cls else np.zeros(0, np.int64)
        aps = ap_per_class(tp, sc, pc, gc, method)
        if not aps:
            return {"mAP50": float("nan"), "mAP50-95": float("nan")}
        stack = np.stack(list(aps.values()))
        return {"mAP50": float(stack[:, 0].mean()), "mAP50-95": float(stack.mean())}


# ----------------------------------------------------------------------------- dataset


def read_yolo_labels(path: Path, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """YOLO txt (cls cx cy w h, normalised) -> (xyxy pixel boxes, classes); missing = none."""
    if not path.exists():
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if not rows:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    a = np.asarray(rows, np.float64)
    if a.shape[1] != 5:
        raise ValueError(f"{path}: expected 5 columns per label line, got {a.shape[1]}")
    cx, cy, bw, bh = a[:, 1] * w, a[:, 2] * h, a[:, 3] * w, a[:, 4] * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    return boxes, a[:, 0].astype(np.int64)


def split_images(data_yaml: Path, split: str) -> list[Path]:
    """Image files of one split of a YOLO dataset YAML (folder form)."""
    import yaml

    d = yaml.safe_load(Path(data_yaml).read_text())
    if split not in d:
        raise ValueError(f"{data_yaml} has no '{split}' split")
    root = Path(d.get("path") or Path(data_yaml).parent)
    if not root.is_absolute():
        root = (Path(data_yaml).parent / root).resolve()
    folder = root / d[split]
    if not folder.is_dir():
        raise FileNotFoundError(f"split folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def label_path(img: Path) -> Path:
    parts = list(img.parts)
    idx = len(parts) - 1 - parts[::-1].index("images")
    parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


def open_model(model_dir: Path, threads: int = 2) -> M.LoadedModel:
    """The model as the device loads it: model.json checked, sha256 verified, session made."""
    return M.load(str(model_dir), M.SessionSettings(intra_op_threads=threads))


def evaluation_limits(spec: M.ModelSpec, conf: float = EVAL_CONF, iou: float = EVAL_IOU,
                      max_det: int = EVAL_MAX_DET, reduced_jpeg: bool = False,
                      region: tuple | None = None, find_part: bool = False) -> Limits:
    """The device's per-image limits with evaluation thresholds (one for every class)."""
    per_class = np.full(spec.num_classes, conf, np.float32)
    return Limits(Thresholds(per_class, iou=iou, max_detections=max_det),
                  max_bytes=1 << 30, max_pixels=1 << 30, reduced_jpeg=reduced_jpeg,
                  region=region, find_part=find_part)


def evaluate_model(loaded: M.LoadedModel, images: list[Path], conf: float = EVAL_CONF,
                   iou: float = EVAL_IOU, report_conf: float | None = None,
                   reduced_jpeg: bool = False, region: tuple | None = None,
                   find_part: bool = False) -> dict:
    """Run the device path over labelled images; mAP plus operating-point and speed figures."""
    runner = Runner(loaded)
    limits = evaluation_limits(loaded.spec, conf, iou, reduced_jpeg=reduced_jpeg, region=region,
                               find_part=find_part)
    buffer = runner.new_buffer()
    acc = Accumulator.new()
    report_conf = loaded.spec.confidence if report_conf is None else report_conf
    tp_at = fp_at = n_gt = 0
    img_ok = flagged = clean = clean_flagged = 0
    infer_ms = prep_ms = 0.0
    for p in images:
        outcome = runner.run_one(Job(p.name, str(p)), limits, buffer)
        if outcome.error is not None or outcome.detections is None or outcome.orig_hw is None:
            raise ValueError(f"{p}: {outcome.error}")
        h, w = outcome.orig_hw
        det = outcome.detections
        pb, ps, pc = det.boxes, det.scores, det.classes
        infer_ms += outcome.timings_ms.get("inference", 0.0)
        prep_ms += outcome.timings_ms.get("preprocess", 0.0)
        gb, gc = read_yolo_labels(label_path(p), w, h)
        acc.add(pb, ps, pc, gb, gc)
        keep = ps > report_conf  # strictly above, as the device's own threshold
        m = match_image(pb[keep], ps[keep], pc[keep], gb, gc, np.array([0.5]))[:, 0]
        tp_at += int(m.sum())
        fp_at += int((~m).sum())
        n_gt += len(gb)
        img_ok += int(bool(keep.any()) == bool(len(gb)))
        flagged += int(bool(keep.any()))
        clean += int(not len(gb))
        clean_flagged += int(not len(gb) and bool(keep.any()))
    res = acc.summary("coco101")
    res_all = acc.summary("all")
    def figure(value: float) -> float | None:  # no labelled box in the split: no AP (JSON null)
        return None if np.isnan(value) else round(value, 4)

    return {
        "mAP50": figure(res["mAP50"]), "mAP50-95": figure(res["mAP50-95"]),
        "mAP50_allpoint": figure(res_all["mAP50"]),
        "mAP50-95_allpoint": figure(res_all["mAP50-95"]),
        "ap_method": "coco101", "images": len(images), "instances": n_gt,
        "operating_point": {
            "confidence": report_conf,
            "precision": round(tp_at / max(tp_at + fp_at, 1), 4),
            "recall": round(tp_at / max(n_gt, 1), 4),
            "image_accuracy": round(img_ok / max(len(images), 1), 4),
            "images_flagged": flagged, "defect_free_images": clean,
            "defect_free_flagged": clean_flagged},
        "eval_conf": conf, "eval_nms_iou": iou, "eval_max_det": EVAL_MAX_DET,
        "path": "vqi_inference Runner.run_one" + (" (JpegReducedDecode)" if reduced_jpeg else "")
        + (f" (InspectionRegion {list(region)})" if region else "")
        + (" (PartFinder AUTO)" if find_part else ""),
        "ms_per_image": round(infer_ms / max(len(images), 1), 2),
        "preprocess_ms_per_image": round(prep_ms / max(len(images), 1), 2),
    }


def with_onnx(loaded: M.LoadedModel, onnx_path: Path, threads: int = 2) -> M.LoadedModel:
    """The same model.json contract over another ONNX file (e.g. its int8 quantization)."""
    spec = replace(loaded.spec, onnx_path=str(onnx_path), sha256=M.file_sha256(str(onnx_path)))
    return M.open_session(spec, M.SessionSettings(intra_op_threads=threads))


def evaluate_dir(model_dir: Path, data_yaml: Path, split: str = "test", conf: float = EVAL_CONF,
                 iou: float = EVAL_IOU, limit: int | None = None,
                 reduced_jpeg: bool = False, region: list[float] | None = None,
                 find_part: bool = False) -> dict:
    """Evaluate an exported model folder (model.onnx + model.json) on a dataset split;
    `region` is an InspectionRegion ([x, y, w, h] fractions) and `find_part` the PartFinder,
    applied as the device does."""
    loaded = open_model(model_dir)
    images = split_images(data_yaml, split)
    if limit:
        images = images[:limit]
    if not images:
        raise ValueError(f"no images in split '{split}' of {data_yaml}")
    res = evaluate_model(loaded, images, conf, iou, reduced_jpeg=reduced_jpeg,
                         region=inspection_region.parse(region or []), find_part=find_part)
    res.update({"split": split, "data": str(Path(data_yaml).resolve()),
                "model_sha256": loaded.spec.sha256, "runtime": "onnxruntime CPU"})
    rule = (yaml.safe_load(Path(data_yaml).read_text()) or {}).get("vqi_split")
    if isinstance(rule, dict) and rule.get("rule"):
        res["split_rule"] = rule["rule"]
    return res
