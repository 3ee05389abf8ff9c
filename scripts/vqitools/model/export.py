"""Export trained weights to ONNX for onnxruntime on CPU, write model.json, check parity.

Choices: fixed input (batch 1, square imgsz) so onnxruntime can pre-plan memory; opset 17
(supported by every onnxruntime >= 1.12, which covers the device range); onnxslim
simplification; FP32; no NMS in the graph (the classic [1, 4+nc, N] output the inference
component decodes). model.json is derived from the ONNX graph itself, so the two cannot disagree.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from vqitools.build import sha256_file
from vqitools.model.offline import make_offline

SCHEMA_VERSION = 1
MODEL_NAME = "vqi-scratch-yolo"
DEFAULT_THRESHOLDS = {"confidence": 0.25, "iou": 0.45, "max_detections": 100, "per_class": {}}


def graph_io(onnx_path: Path) -> dict:
    """Input/output names and static shapes read from the ONNX graph."""
    import onnx

    m = onnx.load(str(onnx_path))
    init = {i.name for i in m.graph.initializer}

    def shape(v: object) -> list[int | str]:
        return [d.dim_value if d.HasField("dim_value") else d.dim_param
                for d in v.type.tensor_type.shape.dim]

    inputs = [v for v in m.graph.input if v.name not in init]
    opset = max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return {"inputs": [(v.name, shape(v)) for v in inputs],
            "outputs": [(v.name, shape(v)) for v in m.graph.output], "opset": opset}


def build_metadata(onnx_path: Path, class_names: list[str], version: str, metrics: dict,
                   source: dict, export_info: dict,
                   thresholds: dict | None = None) -> dict:
    """The model.json document for an ONNX file (see components/model/README.md)."""
    io = graph_io(onnx_path)
    if len(io["inputs"]) != 1 or len(io["outputs"]) != 1:
        raise ValueError(f"expected one input and one output, got {io}")
    (in_name, in_shape), (out_name, out_shape) = io["inputs"][0], io["outputs"][0]
    if not all(isinstance(d, int) and d > 0 for d in in_shape + out_shape):
        raise ValueError(f"export must have static shapes, got {in_shape} -> {out_shape}")
    nc = len(class_names)
    if out_shape[1] != 4 + nc:
        raise ValueError(f"output {out_shape} does not match 4+nc with nc={nc} (classic head "
                         "expected; end-to-end/NMS heads are not supported)")
    h, w = in_shape[2], in_shape[3]
    return {
        "schema_version": SCHEMA_VERSION,
        "name": MODEL_NAME,
        "version": version,
        "task": "detect",
        "class_names": list(class_names),
        "onnx_file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "size_bytes": onnx_path.stat().st_size,
        "input": {"name": in_name, "shape": in_shape, "dtype": "float32", "imgsz": [h, w],
                  "color": "RGB", "layout": "NCHW", "scale": 1 / 255.0, "mean": [0, 0, 0],
                  "std": [1, 1, 1],
                  "letterbox": {"pad_value": 114, "center": True, "scaleup": True, "stride": 32,
                                "auto": False}},
        "output": {"name": out_name, "shape": out_shape, "layout": "boxes_first",
                   "box_format": "cxcywh", "coordinates": "input_pixels",
                   "has_objectness": False, "nms_included": False, "num_anchors": out_shape[2],
                   "strides": [8, 16, 32]},
        "thresholds": dict(thresholds or DEFAULT_THRESHOLDS),
        "metrics": metrics,
        "source": source,
        "export": {"opset": io["opset"], **export_info},
    }


def _sample_inputs(data: Path | None, imgsz: int, n: int = 8) -> list[np.ndarray]:
    """BGR images for the parity check: val images of the dataset, else fresh synthetic ones."""
    import cv2

    if data is not None:
        from vqitools.model.evaluate import split_images

        paths = split_images(data, "val")[:n]
        imgs = [cv2.imread(str(p)) for p in paths]
        if imgs and all(i is not None for i in imgs):
            return imgs
    from vqitools.model.synth import SynthConfig, render

    return [render(12345, "samples", i, SynthConfig(imgsz=imgsz))[0] for i in range(n)]


def parity(torch_model: object, onnx_path: Path, meta: dict, images: list[np.ndarray],
           ) -> dict:
    """Max |onnxruntime - PyTorch| over the raw output on the same preprocessed tensors."""
    import onnxruntime as ort
    import torch

    from vqitools.model.evaluate import M, Runner

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    # The tensors the device would feed, from the model.json about to be written.
    runner = Runner(M.LoadedModel(M.parse_spec(meta, str(onnx_path.parent)), sess, -1, []))
    box_diff = score_diff = 0.0
    for img in images:
        x = runner.new_buffer()
        runner.tensor(img, x)
        with torch.no_grad():
            y = torch_model(torch.from_numpy(x))
        y = y[0] if isinstance(y, (list, tuple)) else y
        y = y.numpy()
        o = sess.run(None, {meta["input"]["name"]: x})[0]
        if o.shape != y.shape:
            raise ValueError(f"parity: onnx output {o.shape} != torch output {y.shape}")
        box_diff = max(box_diff, float(np.abs(o[:, :4] - y[:, :4]).max()))
        score_diff = max(score_diff, float(np.abs(o[:, 4:] - y[:, 4:]).max()))
    return {"images": len(images), "box_max_abs_diff_px": box_diff,
            "score_max_abs_diff": score_diff, "max_abs_diff": max(box_diff, score_diff)}


def _train_info(weights: Path, ckpt: dict) -> tuple[dict, dict]:
    """Val metrics and source details recorded at training time."""
    import ultralytics

    targs = ckpt.get("train_args") or {}
    tm = ckpt.get("train_metrics") or {}
    val = {"mAP50": tm.get("metrics/mAP50(B)"), "mAP50-95": tm.get("metrics/mAP50-95(B)")}
    cmd = ""
    result = weights.parent.parent / "train_result.json"
    if result.exists():
        r = json.loads(result.read_text())
        val = {"mAP50": round(r["map50"], 4), "mAP50-95": round(r["map50_95"], 4)}
        cmd = r.get("command", "")
    dataset = str(targs.get("data", ""))
    ds_json = Path(dataset).parent / "dataset.json" if dataset else None
    if ds_json and ds_json.exists():
        d = json.loads(ds_json.read_text())
        counts = d.get("counts", d.get("images"))  # synth.py / groundtruth.py
        dataset = (f"{d['generator']} seed={d['seed']} counts={counts} boxes={d['boxes']}"
                   + (f"; split {d['rule']}" if d.get("rule") else ""))
    source = {"framework": f"ultralytics {ultralytics.__version__}",
              "model_yaml": Path(str(targs.get("model", ""))).name,
              "train_command": cmd, "dataset": dataset,
              "epochs": ckpt.get("epoch", -1) + 1 if ckpt.get("epoch", -1) >= 0 else
              targs.get("epochs"),
              "imgsz": targs.get("imgsz"),
              "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {"val": val}, source


def export(weights: Path, out_dir: Path, imgsz: int = 320, opset: int = 17,
           data: Path | None = None, version: str = "1.0.0", tolerance: float = 1e-2,
           train_command: str = "", dataset_desc: str = "",
           score_tolerance: float = 1e-4) -> dict:
    """Write out_dir/model.onnx + model.json; raise if onnxruntime disagrees with PyTorch.

    ``tolerance`` bounds box coordinates (input pixels; float32 rounding near 320 px after
    Conv+BN fusion is ~1e-3 px), ``score_tolerance`` the class scores.
    """
    make_offline()
    import torch
    from ultralytics import YOLO

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"weights not found: {weights}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(str(weights), map_location="cpu", weights_only=False)
    metrics, source = _train_info(weights, ckpt)
    if train_command:
        source["train_command"] = train_command
    if dataset_desc:
        source["dataset"] = dataset_desc

    model = YOLO(str(weights))
    names = model.names
    class_names = [names[i] for i in sorted(names)]
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / weights.name
        shutil.copy2(weights, local)  # Ultralytics writes the .onnx beside the weights
        produced = YOLO(str(local)).export(format="onnx", imgsz=imgsz, opset=opset,
                                           simplify=True, dynamic=False, nms=False, batch=1,
                                           device="cpu")
        onnx_path = out_dir / "model.onnx"
        shutil.copy2(produced, onnx_path)

    export_info = {"simplified": True, "quantized": False, "dynamic": False, "precision": "fp32",
                   "exporter": "ultralytics YOLO.export(format='onnx')"}
    meta = build_metadata(onnx_path, class_names, version, metrics, source, export_info)
    torch_model = model.model.float().eval()
    par = parity(torch_model, onnx_path, meta, _sample_inputs(data, imgsz))
    par["tolerance"] = tolerance
    par["score_tolerance"] = score_tolerance
    par["passed"] = (par["box_max_abs_diff_px"] <= tolerance
                     and par["score_max_abs_diff"] <= score_tolerance)
    meta["export"]["parity"] = par
    if not par["passed"]:
        raise ValueError(f"onnxruntime/PyTorch parity failed: {par}")
    write_metadata(out_dir / "model.json", meta)
    return meta


def write_metadata(path: Path, meta: dict) -> None:
    path.write_text(json.dumps(meta, indent=2) + "\n")
