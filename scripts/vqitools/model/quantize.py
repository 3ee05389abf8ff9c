"""Static int8 quantization (onnxruntime QDQ) with a guard on the mAP it costs.

Calibration feeds real images through the same preprocessing as inference. The Detect head's
box/score decoding (Split, Softmax over DFL bins, Sigmoid, Concat, arithmetic on pixel
coordinates) stays float: quantizing a tensor that mixes 0..1 scores with 0..320 pixel
coordinates destroys the scores. The int8 model is written only if its mAP50 on the given
split is within ``max_map50_drop`` of the float model's.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from vqitools.model.evaluate import IMAGE_SUFFIXES, evaluate_session, preprocess, split_images
from vqitools.model.export import sha256_file, write_metadata


def _calibration_images(folder: Path, n: int) -> list[Path]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no calibration images under {folder}")
    step = max(1, len(paths) // n)
    return paths[::step][:n]


class _Reader:
    """onnxruntime CalibrationDataReader over preprocessed images."""

    def __init__(self, paths: list[Path], meta: dict) -> None:
        self._it = iter(paths)
        self._meta = meta

    def get_next(self) -> dict | None:
        p = next(self._it, None)
        if p is None:
            return None
        img = cv2.imread(str(p))
        if img is None:
            raise ValueError(f"unreadable calibration image {p}")
        return {self._meta["input"]["name"]: preprocess(img, self._meta)[0]}


def head_decode_nodes(onnx_path: Path) -> list[str]:
    """Names of the non-Conv nodes of the last '/model.N/' block (the Detect decode)."""
    import onnx

    g = onnx.load(str(onnx_path)).graph
    idx = [int(m.group(1)) for n in g.node if (m := re.match(r"/model\.(\d+)/", n.name))]
    if not idx:
        return []
    head = f"/model.{max(idx)}/"
    return [n.name for n in g.node if n.name.startswith(head) and n.op_type != "Conv"]


def _session(path: Path) -> object:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _latency_ms(sess: object, meta: dict, runs: int = 30) -> float:
    x = np.random.default_rng(0).random(meta["input"]["shape"], dtype=np.float32)
    name = meta["input"]["name"]
    for _ in range(3):
        sess.run(None, {name: x})
    t0 = time.perf_counter()
    for _ in range(runs):
        sess.run(None, {name: x})
    return 1000 * (time.perf_counter() - t0) / runs


def quantize(model_dir: Path, out_dir: Path, calib: Path, data: Path, split: str = "val",
             n_calib: int = 64, max_map50_drop: float = 0.02, per_channel: bool = True,
             keep_head_float: bool = True) -> dict:
    """Quantize model_dir/model.onnx; write out_dir only if the mAP guard passes."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    fp32 = model_dir / meta["onnx_file"]
    images = split_images(data, split)
    calib_paths = _calibration_images(calib, n_calib)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        q = Path(tmp) / "model.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        exclude = head_decode_nodes(pre) if keep_head_float else []
        quantize_static(str(pre), str(q), _Reader(calib_paths, meta),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude)
        fsess, qsess = _session(fp32), _session(q)
        fres = evaluate_session(fsess, meta, images)
        qres = evaluate_session(qsess, meta, images)
        drop = fres["mAP50"] - qres["mAP50"]
        report = {
            "accepted": bool(drop <= max_map50_drop), "max_map50_drop": max_map50_drop,
            "map50_drop": round(drop, 4), "split": split, "images": len(images),
            "calibration_images": len(calib_paths), "excluded_head_nodes": len(exclude),
            "float": {"size_bytes": fp32.stat().st_size, "mAP50": fres["mAP50"],
                      "mAP50-95": fres["mAP50-95"],
                      "latency_ms": round(_latency_ms(fsess, meta), 2)},
            "int8": {"size_bytes": q.stat().st_size, "mAP50": qres["mAP50"],
                     "mAP50-95": qres["mAP50-95"],
                     "latency_ms": round(_latency_ms(qsess, meta), 2)},
        }
        if not report["accepted"]:
            report["reason"] = (f"int8 mAP50 {qres['mAP50']:.4f} is {drop:.4f} below float "
                                f"{fres['mAP50']:.4f} (allowed {max_map50_drop}); nothing written")
            return report
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(q, out_dir / "model.onnx")
    qmeta = json.loads(json.dumps(meta))
    qmeta["onnx_file"] = "model.onnx"
    qmeta["sha256"] = sha256_file(out_dir / "model.onnx")
    qmeta["size_bytes"] = (out_dir / "model.onnx").stat().st_size
    qmeta["export"].update({"quantized": True, "precision": "int8-qdq", "quantization": {
        k: v for k, v in report.items() if k != "accepted"}})
    qmeta["metrics"] = {**meta.get("metrics", {}), f"{split}_onnx_int8": {
        "mAP50": qres["mAP50"], "mAP50-95": qres["mAP50-95"]}}
    write_metadata(out_dir / "model.json", qmeta)
    report["written"] = str(out_dir)
    return report
