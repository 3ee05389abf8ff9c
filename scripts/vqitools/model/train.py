"""Train an Ultralytics YOLO detector from a model YAML, fully offline.

Starts from random weights (a YAML, never a ``.pt`` name, so nothing is downloaded) or, to
fine-tune, from the weights of an exported model.onnx of the same YAML (the shipped model: its
fused Conv+BN weights go back into the convolutions, with batch norms that start as identity, and
the rebuilt network must reproduce the ONNX outputs before training starts). Keeps the classic
YOLOv8 Detect head (output [1, 4+nc, N], NMS outside the graph), shows Ultralytics' per-epoch
progress, and ends by printing mAP50 and mAP50-95 on the val split.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from vqitools.model.offline import make_offline

DEFAULT_MODEL_YAML = Path(__file__).with_name("vqi-scratch-yolo.yaml")
# A fixed industrial camera: the part is always seen the same way up, at one distance, under one
# light; so small shifts, rotations and scale changes, flips (a scratch has no handedness), some
# brightness change, and mosaic only half of the time (real crops are whole tags).
FIXED_CAMERA = dict(degrees=3.0, translate=0.05, scale=0.15, shear=0.0, perspective=0.0,
                    fliplr=0.5, flipud=0.5, hsv_h=0.0, hsv_s=0.0, hsv_v=0.3, mosaic=0.5,
                    mixup=0.0)
PARITY_TOLERANCE = 1e-3


@dataclass
class TrainResult:
    """Where the weights are and how well they do on val."""

    best: Path
    run_dir: Path
    map50: float
    map50_95: float
    command: str

    def to_json(self) -> str:
        d = asdict(self)
        d["best"], d["run_dir"] = str(self.best), str(self.run_dir)
        return json.dumps(d, indent=2)


def train(data: Path, model_yaml: Path = DEFAULT_MODEL_YAML, epochs: int = 60, imgsz: int = 320,
          batch: int = 16, workers: int = 2, project: Path = Path("runs/vqi"),
          name: str = "train", seed: int = 0, hours: float | None = None,
          patience: int = 100, device: str = "cpu", mosaic: float = 1.0,
          close_mosaic: int = 5, init_onnx: Path | None = None,
          fixed_camera: bool = False) -> TrainResult:
    """Train and validate; returns best weights and val metrics."""
    notes = make_offline()
    print("offline settings: " + ", ".join(notes), flush=True)
    from ultralytics import YOLO

    model_yaml = Path(model_yaml)
    if model_yaml.suffix not in (".yaml", ".yml"):
        raise ValueError(f"model must be a YAML (no pretrained download): {model_yaml}")
    if not Path(data).is_file():
        raise FileNotFoundError(f"dataset YAML not found: {data}")
    model = YOLO(str(model_yaml), task="detect")
    if init_onnx is not None:
        diff = load_onnx_weights(model.model, Path(init_onnx))
        print(f"started from {init_onnx}: rebuilt network matches it to {diff:.2e}", flush=True)
        model.ckpt = {"model": model.model}  # the trainer then copies these weights
    kwargs = dict(data=str(data), epochs=epochs, imgsz=imgsz, batch=batch, workers=workers,
                  project=str(Path(project).resolve()), name=name, exist_ok=True, seed=seed,
                  deterministic=True, pretrained=init_onnx is not None, amp=False, plots=False,
                  device=device, patience=patience, mosaic=mosaic, close_mosaic=close_mosaic,
                  verbose=True)
    if fixed_camera:
        kwargs.update(FIXED_CAMERA)
    if hours:
        kwargs["time"] = hours
    model.train(**kwargs)
    trainer = model.trainer
    best = Path(trainer.best if Path(trainer.best).exists() else trainer.last)
    metrics = YOLO(str(best)).val(data=str(data), imgsz=imgsz, batch=batch, device=device,
                                  plots=False, split="val", workers=workers,
                                  project=str(Path(project).resolve()), name=f"{name}-val",
                                  exist_ok=True)
    result = TrainResult(best=best, run_dir=Path(trainer.save_dir),
                         map50=float(metrics.box.map50), map50_95=float(metrics.box.map),
                         command=" ".join(sys.argv))
    print(f"val mAP50={result.map50:.4f} mAP50-95={result.map50_95:.4f} best={best}", flush=True)
    (Path(trainer.save_dir) / "train_result.json").write_text(result.to_json() + "\n")
    return result


def load_onnx_weights(det_model: object, onnx_path: Path) -> float:
    """Put an exported model's weights back into `det_model` (built from the same YAML) and
    return the largest output difference against onnxruntime; ValueError if they differ.

    The check runs at the exported model's own (static) input size: fine-tuning may train at
    another size, which the convolutions do not care about."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper
    from ultralytics.nn.modules.conv import Conv

    graph = onnx.load(str(onnx_path)).graph
    weights = {i.name: np.array(numpy_helper.to_array(i)) for i in graph.initializer}
    used = set()

    def put(target: "torch.Tensor", name: str) -> None:
        if tuple(target.shape) != weights[name].shape:
            raise ValueError(f"{onnx_path}: {name} is {weights[name].shape} there and "
                             f"{tuple(target.shape)} in the model YAML; not the same architecture")
        target.copy_(torch.from_numpy(weights[name]))
        used.add(name)

    with torch.no_grad():
        for name, module in det_model.named_modules():  # type: ignore[attr-defined]
            if isinstance(module, Conv) and f"{name}.conv.weight" in weights:
                put(module.conv.weight, f"{name}.conv.weight")
                bn = module.bn  # identity in eval: weight/sqrt(var+eps) = 1, mean 0
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.fill_(math.sqrt(1.0 + bn.eps))
                put(bn.bias, f"{name}.conv.bias")
            elif isinstance(module, torch.nn.Conv2d) and f"{name}.weight" in weights \
                    and f"{name}.weight" not in used:
                put(module.weight, f"{name}.weight")
                if module.bias is not None and f"{name}.bias" in weights:
                    put(module.bias, f"{name}.bias")
    expected = {n for n in weights if n.endswith((".weight", ".bias")) and n.startswith("model.")}
    if expected - used:
        raise ValueError(f"{onnx_path}: {len(expected - used)} weights have no place in the model "
                         f"YAML (e.g. {sorted(expected - used)[:3]}); was it exported from it?")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    x = np.random.default_rng(0).random(tuple(shape), dtype=np.float32)
    det_model.eval()  # type: ignore[attr-defined]
    with torch.no_grad():
        out = det_model(torch.from_numpy(x))  # type: ignore[operator]
    mine = (out[0] if isinstance(out, (tuple, list)) else out).numpy()
    theirs = session.run(None, {session.get_inputs()[0].name: x})[0]
    if mine.shape != theirs.shape:
        raise ValueError(f"{onnx_path}: output {theirs.shape}, the YAML's model gives {mine.shape}")
    diff = float(np.abs(mine - theirs).max())
    if diff > PARITY_TOLERANCE * max(1.0, float(np.abs(theirs).max())):
        raise ValueError(f"{onnx_path}: the rebuilt network differs by {diff:.3g}; not the same "
                         "architecture")
    det_model.train()  # type: ignore[attr-defined]
    return diff
