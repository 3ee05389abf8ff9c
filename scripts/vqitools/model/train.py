"""Train an Ultralytics YOLO detector from a model YAML, fully offline.

Starts from random weights (a YAML, never a ``.pt`` name, so nothing is downloaded), keeps the
classic YOLOv8 Detect head (output [1, 4+nc, N], NMS outside the graph), shows Ultralytics'
per-epoch progress, and ends by printing mAP50 and mAP50-95 on the val split.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from vqitools.model.offline import make_offline

DEFAULT_MODEL_YAML = Path(__file__).with_name("vqi-scratch-yolo.yaml")


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
          close_mosaic: int = 5) -> TrainResult:
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
    kwargs = dict(data=str(data), epochs=epochs, imgsz=imgsz, batch=batch, workers=workers,
                  project=str(Path(project).resolve()), name=name, exist_ok=True, seed=seed,
                  deterministic=True, pretrained=False, amp=False, plots=False,
                  device=device, patience=patience, mosaic=mosaic, close_mosaic=close_mosaic,
                  verbose=True)
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
