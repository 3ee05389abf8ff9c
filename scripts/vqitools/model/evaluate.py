"""Detection mAP of an exported model, run through onnxruntime exactly as the device runs it.

The metric is written out here in numpy (no Ultralytics at evaluation time) so the number in the
model card comes from the same pre/post-processing contract that model.json describes:
letterbox -> RGB/255 NCHW -> [1, 4+nc, N] boxes-first cxcywh -> confidence filter -> per-class
NMS -> boxes back in original pixels. Matching is COCO-style greedy by score; AP is the
101-point interpolated (COCO) or all-point (VOC 2010+) area under the precision envelope.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


# ----------------------------------------------------------------------------- geometry


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between xyxy boxes a [n,4] and b [m,4]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i:i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_thr]
    return np.asarray(keep, np.int64)


# ----------------------------------------------------------------------------- pre/post


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the model input (to map boxes back)."""

    ratio: float
    pad_x: float
    pad_y: float


def letterbox(img: np.ndarray, size: tuple[int, int], pad_value: int = 114,
              scaleup: bool = True, center: bool = True) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to size (h, w), as Ultralytics' LetterBox does."""
    h0, w0 = img.shape[:2]
    th, tw = size
    r = min(th / h0, tw / w0)
    if not scaleup:
        r = min(r, 1.0)
    nw, nh = int(round(w0 * r)), int(round(h0 * r))
    dw, dh = (tw - nw), (th - nh)
    if center:
        dw, dh = dw / 2, dh / 2
    if (w0, h0) != (nw, nh):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, bottom = (int(round(dh - 0.1)), int(round(dh + 0.1))) if center else (0, int(dh))
    left, right = (int(round(dw - 0.1)), int(round(dw + 0.1))) if center else (0, int(dw))
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT,
                             value=(pad_value, pad_value, pad_value))
    return img, Letterbox(r, float(left), float(top))


def preprocess(bgr: np.ndarray, meta: dict) -> tuple[np.ndarray, Letterbox]:
    """BGR uint8 image -> model input tensor per model.json's input section."""
    inp = meta["input"]
    lb = inp.get("letterbox", {})
    img, geo = letterbox(bgr, tuple(inp["imgsz"]), int(lb.get("pad_value", 114)),
                         bool(lb.get("scaleup", True)), bool(lb.get("center", True)))
    if inp.get("color", "RGB") == "RGB":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    x = img.astype(np.float32) * float(inp.get("scale", 1 / 255))
    mean = np.asarray(inp.get("mean", [0, 0, 0]), np.float32)
    std = np.asarray(inp.get("std", [1, 1, 1]), np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), geo


def postprocess(out: np.ndarray, geo: Letterbox, orig_hw: tuple[int, int], conf: float,
                iou: float, max_det: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[1, 4+nc, N] -> (xyxy boxes in original pixels, scores, classes)."""
    pred = np.asarray(out)[0].T  # [N, 4+nc]
    cls_scores = pred[:, 4:]
    cls = cls_scores.argmax(axis=1)
    scores = cls_scores[np.arange(len(cls)), cls]
    m = scores >= conf
    pred, cls, scores = pred[m], cls[m], scores[m]
    if not len(pred):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    offset = cls[:, None].astype(np.float32) * 7680.0  # class-aware NMS in one pass
    keep = nms(boxes + offset, scores, iou)[:max_det]
    boxes, scores, cls = boxes[keep], scores[keep], cls[keep]
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - geo.pad_x) / geo.ratio
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - geo.pad_y) / geo.ratio
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, orig_hw[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, orig_hw[0])
    return boxes.astype(np.float32), scores.astype(np.float32), cls.astype(np.int64)


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


# ----------------------------------------------------------------------------- dataset + run


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


def load_model(model_dir: Path, threads: int = 2) -> tuple[object, dict]:
    """onnxruntime CPU session + model.json from an exported model folder."""
    import onnxruntime as ort

    meta = json.loads((Path(model_dir) / "model.json").read_text())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(Path(model_dir) / meta["onnx_file"]), opts,
                                providers=["CPUExecutionProvider"])
    return sess, meta


def evaluate_session(sess: object, meta: dict, images: list[Path], conf: float = 0.001,
                     iou: float = 0.6, report_conf: float | None = None) -> dict:
    """Run a session over images with labels; mAP plus operating-point and speed figures."""
    in_name = meta["input"]["name"]
    acc = Accumulator.new()
    report_conf = meta.get("thresholds", {}).get("confidence", 0.25) if report_conf is None \
        else report_conf
    tp_at = fp_at = n_gt = 0
    img_ok = 0
    infer_s = 0.0
    for p in images:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"unreadable image: {p}")
        h, w = bgr.shape[:2]
        x, geo = preprocess(bgr, meta)
        t0 = time.perf_counter()
        out = sess.run(None, {in_name: x})[0]
        infer_s += time.perf_counter() - t0
        pb, ps, pc = postprocess(out, geo, (h, w), conf, iou)
        gb, gc = read_yolo_labels(label_path(p), w, h)
        acc.add(pb, ps, pc, gb, gc)
        keep = ps >= report_conf
        m = match_image(pb[keep], ps[keep], pc[keep], gb, gc, np.array([0.5]))[:, 0]
        tp_at += int(m.sum())
        fp_at += int((~m).sum())
        n_gt += len(gb)
        img_ok += int(bool(keep.any()) == bool(len(gb)))
    res = acc.summary("coco101")
    res_all = acc.summary("all")
    return {
        "mAP50": round(res["mAP50"], 4), "mAP50-95": round(res["mAP50-95"], 4),
        "mAP50_allpoint": round(res_all["mAP50"], 4),
        "mAP50-95_allpoint": round(res_all["mAP50-95"], 4),
        "ap_method": "coco101", "images": len(images), "instances": n_gt,
        "operating_point": {
            "confidence": report_conf,
            "precision": round(tp_at / max(tp_at + fp_at, 1), 4),
            "recall": round(tp_at / max(n_gt, 1), 4),
            "image_accuracy": round(img_ok / max(len(images), 1), 4)},
        "eval_conf": conf, "eval_nms_iou": iou,
        "ms_per_image": round(1000 * infer_s / max(len(images), 1), 2),
    }


def evaluate_dir(model_dir: Path, data_yaml: Path, split: str = "test", conf: float = 0.001,
                 iou: float = 0.6, limit: int | None = None) -> dict:
    """Evaluate an exported model folder (model.onnx + model.json) on a dataset split."""
    sess, meta = load_model(model_dir)
    images = split_images(data_yaml, split)
    if limit:
        images = images[:limit]
    if not images:
        raise ValueError(f"no images in split '{split}' of {data_yaml}")
    res = evaluate_session(sess, meta, images, conf, iou)
    res.update({"split": split, "data": str(Path(data_yaml).resolve()),
                "model_sha256": meta.get("sha256"), "runtime": "onnxruntime CPU"})
    return res
