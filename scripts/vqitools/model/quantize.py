"""Static int8 quantization (onnxruntime QDQ) with a guard on the mAP it costs.

Calibration feeds real images through the device's own decode and preprocessing (the Inference
component's Runner), and both models are scored on its detection path (evaluate.py). The Detect
head's box/score decoding (Split, Softmax over DFL bins, Sigmoid, Concat, arithmetic on pixel
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
from typing import Any

import numpy as np

from vqitools.model.evaluate import (
    IMAGE_SUFFIXES,
    Runner,
    evaluate_model,
    open_model,
    split_images,
    with_onnx,
)
from vqitools.model.export import sha256_file, write_metadata


def _calibration_images(folder: Path, n: int) -> list[Path]:
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no calibration images under {folder}")
    step = max(1, len(paths) // n)
    return paths[::step][:n]


class _Reader:
    """onnxruntime CalibrationDataReader: image files -> the tensors the device would feed."""

    def __init__(self, paths: list[Path], runner: Runner) -> None:
        from vqi_inference import decode

        self._it = iter(paths)
        self._runner = runner
        self._load = decode.load_image

    def get_next(self) -> dict | None:
        p = next(self._it, None)
        if p is None:
            return None
        image = self._load(str(p), 1 << 30, 1 << 30)  # ImageError names a bad file
        buffer = self._runner.new_buffer()
        self._runner.tensor(image, buffer)
        return {self._runner.input_name: buffer}


def head_decode_nodes(onnx_path: Path) -> list[str]:
    """Names of the non-Conv nodes of the last '/model.N/' block (the Detect decode)."""
    import onnx

    g = onnx.load(str(onnx_path)).graph
    idx = [int(m.group(1)) for n in g.node if (m := re.match(r"/model\.(\d+)/", n.name))]
    if not idx:
        return []
    head = f"/model.{max(idx)}/"
    return [n.name for n in g.node if n.name.startswith(head) and n.op_type != "Conv"]


def _latency_ms(loaded: Any, runs: int = 30) -> float:
    spec = loaded.spec
    x = np.random.default_rng(0).random((1, 3, *spec.imgsz), dtype=np.float32)
    for _ in range(3):
        loaded.session.run(None, {spec.input_name: x})
    t0 = time.perf_counter()
    for _ in range(runs):
        loaded.session.run(None, {spec.input_name: x})
    return 1000 * (time.perf_counter() - t0) / runs


def quantize(model_dir: Path, out_dir: Path, calib: Path, data: Path, split: str = "val",
             n_calib: int = 64, max_map50_drop: float = 0.02, per_channel: bool = True,
             keep_head_float: bool = True, method: str = "minmax",
             write_refused: bool = False) -> dict:
    """Quantize model_dir/model.onnx; write out_dir only if the mAP guard passes (or, with
    `write_refused`, anyway, marked `accepted: false`: to try it as a challenger, not to ship).
    `method`: activation range calibration, minmax or percentile (99.99th, robust to a few
    extreme activations) or entropy."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    fp32 = model_dir / meta["onnx_file"]
    floating = open_model(model_dir)
    images = split_images(data, split)
    calib_paths = _calibration_images(calib, n_calib)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        q = Path(tmp) / "model.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        exclude = head_decode_nodes(pre) if keep_head_float else []
        quantize_static(str(pre), str(q), _Reader(calib_paths, Runner(floating)),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method={"minmax": CalibrationMethod.MinMax,
                                          "percentile": CalibrationMethod.Percentile,
                                          "entropy": CalibrationMethod.Entropy}[method],
                        extra_options={"CalibPercentile": 99.99}, nodes_to_exclude=exclude)
        quantized = with_onnx(floating, q)
        fres = evaluate_model(floating, images)
        qres = evaluate_model(quantized, images)
        drop = fres["mAP50"] - qres["mAP50"]
        report = {
            "accepted": bool(drop <= max_map50_drop), "max_map50_drop": max_map50_drop,
            "map50_drop": round(drop, 4), "split": split, "images": len(images),
            "calibration_method": method,
            "calibration_images": len(calib_paths), "excluded_head_nodes": len(exclude),
            "float": {"size_bytes": fp32.stat().st_size, "mAP50": fres["mAP50"],
                      "mAP50-95": fres["mAP50-95"],
                      "latency_ms": round(_latency_ms(floating), 2)},
            "int8": {"size_bytes": q.stat().st_size, "mAP50": qres["mAP50"],
                     "mAP50-95": qres["mAP50-95"],
                     "latency_ms": round(_latency_ms(quantized), 2)},
        }
        if not report["accepted"]:
            report["reason"] = (f"int8 mAP50 {qres['mAP50']:.4f} is {drop:.4f} below float "
                                f"{fres['mAP50']:.4f} (allowed {max_map50_drop})"
                                + ("; written anyway (--write-refused): not for shipping"
                                   if write_refused else "; nothing written"))
            if not write_refused:
                return report
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(q, out_dir / "model.onnx")
    qmeta = json.loads(json.dumps(meta))
    qmeta["onnx_file"] = "model.onnx"
    qmeta["sha256"] = sha256_file(out_dir / "model.onnx")
    qmeta["size_bytes"] = (out_dir / "model.onnx").stat().st_size
    qmeta["export"].update({"quantized": True, "precision": "int8-qdq", "quantization": report})
    qmeta["metrics"] = {**meta.get("metrics", {}), f"{split}_onnx_int8": {
        "mAP50": qres["mAP50"], "mAP50-95": qres["mAP50-95"]}}
    write_metadata(out_dir / "model.json", qmeta)
    report["written"] = str(out_dir)
    return report
