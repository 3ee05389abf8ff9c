"""Argument parsing for scripts/model; each subcommand imports only what it needs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
MODEL_COMPONENT = REPO_ROOT / "components" / "model"


def _generate(a: argparse.Namespace) -> int:
    from vqitools.model.synth import SynthConfig, generate_dataset

    counts = {"train": a.train, "val": a.val, "test": a.test}
    counts = {k: v for k, v in counts.items() if v > 0}
    info = generate_dataset(Path(a.out), a.seed, counts, SynthConfig(imgsz=a.imgsz), jobs=a.jobs)
    print(f"wrote {info.data_yaml} counts={info.counts} boxes={info.boxes}")
    return 0


def _import_groundtruth(a: argparse.Namespace) -> int:
    from datetime import datetime

    from vqitools.model import groundtruth as gt

    labels = Path(a.labels)
    if not labels.is_file():
        raise FileNotFoundError(f"labels not found: {labels}")
    classes = [c.strip() for c in a.classes.split(",") if c.strip()]
    if labels.suffix.lower() == ".csv":
        records = gt.read_labels_csv(labels)
    else:
        records, class_map = gt.read_manifest(labels, a.attribute)
        for cid, name in class_map.items():
            if cid >= len(classes) or classes[cid] != name:
                raise gt.LabelError(f"{labels.name}: class {cid} is {name!r} in the manifest's "
                                    f"class-map, but --classes gives {classes}")
    defect_free = []
    if a.defect_free:
        folder = Path(a.defect_free)
        if not folder.is_dir():
            raise FileNotFoundError(f"--defect-free folder not found: {folder}")
        defect_free = sorted(p for p in folder.rglob("*") if p.suffix.lower()
                             in gt.IMAGE_SUFFIXES)
    rule = gt.SplitRule(test_from=datetime.fromisoformat(a.test_from) if a.test_from else None,
                        test_fraction=a.test_fraction, val_fraction=a.val_fraction, seed=a.seed)
    summary = gt.import_dataset(records, Path(a.images), Path(a.out), classes, rule, defect_free)
    print(json.dumps(summary, indent=2))
    print(f"wrote {Path(a.out).resolve() / 'data.yaml'}")
    return 0


def _train(a: argparse.Namespace) -> int:
    from vqitools.model.train import train

    r = train(Path(a.data), Path(a.model), epochs=a.epochs, imgsz=a.imgsz, batch=a.batch,
              workers=a.workers, project=Path(a.project), name=a.name, seed=a.seed,
              hours=a.hours, patience=a.patience, mosaic=a.mosaic, close_mosaic=a.close_mosaic,
              device=a.device, init_onnx=Path(a.init_onnx) if a.init_onnx else None,
              fixed_camera=a.fixed_camera)
    print(r.to_json())
    return 0


def _export(a: argparse.Namespace) -> int:
    from vqitools.model.export import export

    meta = export(Path(a.weights), Path(a.out), imgsz=a.imgsz, opset=a.opset,
                  data=Path(a.data) if a.data else None, version=a.version,
                  tolerance=a.tolerance, train_command=a.train_command,
                  dataset_desc=a.dataset_desc, score_tolerance=a.score_tolerance)
    print(json.dumps(meta["export"], indent=2))
    if a.data:  # the drift reference, from the same validation images, through the device path
        from vqitools.model.reference import write_reference

        try:
            ref = write_reference(Path(a.out), Path(a.data), "val",
                                  "scripts/model " + " ".join(sys.argv[1:]))
        except (ValueError, FileNotFoundError) as exc:
            print(f"no drift reference written: {exc}", file=sys.stderr)
        else:
            print(f"drift reference from {ref['images']} val images: defect rate "
                  f"{ref['defect_rate']}")
    return 0


def _quantize(a: argparse.Namespace) -> int:
    from vqitools.model.quantize import quantize

    report = quantize(Path(a.model_dir), Path(a.out), Path(a.calib), Path(a.data),
                      split=a.split, n_calib=a.n_calib, max_map50_drop=a.max_map50_drop,
                      method=a.method, write_refused=a.write_refused)
    print(json.dumps(report, indent=2))
    return 0 if report["accepted"] else 3


def _evaluate(a: argparse.Namespace) -> int:
    from vqitools.model.evaluate import evaluate_dir

    res = evaluate_dir(Path(a.model_dir), Path(a.data), split=a.split, conf=a.conf, iou=a.iou,
                       limit=a.limit, reduced_jpeg=a.reduced_jpeg, region=a.region,
                       find_part=a.find_part)
    res["command"] = "scripts/model " + " ".join(sys.argv[1:])
    print(json.dumps(res, indent=2))
    if a.update_metrics:
        from vqitools.model.package import record_metrics

        record_metrics(Path(a.model_dir), a.update_metrics, res)
    if a.min_map50 is not None and (res["mAP50"] is None or res["mAP50"] < a.min_map50):
        print(f"mAP50 {res['mAP50']:.4f} is below the required {a.min_map50}", file=sys.stderr)
        return 4
    return 0


def _crop(a: argparse.Namespace) -> int:
    from vqi_inference import region
    from vqitools.model.crop import crop_dataset

    fixed = region.parse(a.region) if a.region else None
    print(json.dumps(crop_dataset(Path(a.data), Path(a.out), fixed, a.find_part), indent=2))
    return 0


def _fractions(text: str) -> list[float]:
    """--region X,Y,W,H -> four floats (region.parse checks that they fit the frame)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected X,Y,W,H as numbers") from exc
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: expected four numbers X,Y,W,H")
    return values


def _reference(a: argparse.Namespace) -> int:
    from vqitools.model.reference import write_reference

    ref = write_reference(Path(a.model_dir), Path(a.data), a.split,
                          "scripts/model " + " ".join(sys.argv[1:]))
    print(json.dumps(ref, indent=2))
    return 0


def _package(a: argparse.Namespace) -> int:
    from vqitools.model.package import add_challenger, package

    if a.model_dir is None and a.challenger is None:
        print("package: give --model-dir (the champion), --challenger, or both",
              file=sys.stderr)
        return 2
    if a.model_dir is not None:
        dest = package(Path(a.model_dir), Path(a.component), version=a.version)
        print(f"packaged into {dest}")
    if a.challenger is not None:
        meta = add_challenger(Path(a.challenger), Path(a.component))
        print(f"challenger {meta['name']} {meta['version']} ({meta['sha256'][:12]}) packaged "
              f"beside the champion")
    return 0


def _promote(a: argparse.Namespace) -> int:
    from vqitools.model.package import promote

    meta = promote(Path(a.component), version=a.version)
    print(f"promoted: the champion is now {meta['name']} {meta['version']} "
          f"({meta['sha256'][:12]}); run `scripts/model reference` for its drift reference")
    return 0


def _challenger_report(a: argparse.Namespace) -> int:
    from vqitools.model.challenger_report import report, summary_lines

    body = report(Path(a.root))
    print(json.dumps(body, indent=2) if a.json else "\n".join(summary_lines(body)))
    return 0 if body["windows"] else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/model",
        description="Model toolchain: synthetic data, offline YOLO training, ONNX export + "
        "model.json, int8 quantization, onnxruntime mAP, packaging into components/model.")
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("generate", help="write a synthetic YOLO dataset")
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--train", type=int, default=900)
    g.add_argument("--val", type=int, default=160)
    g.add_argument("--test", type=int, default=0)
    g.add_argument("--imgsz", type=int, default=320)
    g.add_argument("--jobs", type=int, default=1, help="worker processes (output identical)")
    g.set_defaults(fn=_generate)

    i = sub.add_parser("import-groundtruth",
                       help="SageMaker Ground Truth boxes (labels.csv or output manifest) -> "
                       "YOLO dataset with a leak-free split by camera frame")
    i.add_argument("--labels", required=True, help="labels.csv, or an output manifest (JSON lines)")
    i.add_argument("--images", required=True, help="folder holding the labelled images")
    i.add_argument("--out", required=True)
    i.add_argument("--classes", default="scratch", help="class names by id, comma separated")
    i.add_argument("--attribute", default=None, help="manifest label attribute (default: found)")
    i.add_argument("--defect-free", default=None,
                   help="folder of images known to be defect-free (the clean split)")
    i.add_argument("--test-from", default=None, metavar="YYYY-MM-DDTHH:MM:SS",
                   help="frames at or after this time are the test split")
    i.add_argument("--test-fraction", type=float, default=0.2,
                   help="without --test-from: the newest fraction of frames is test")
    i.add_argument("--val-fraction", type=float, default=0.15)
    i.add_argument("--seed", default="vqi", help="hash seed of the val choice")
    i.set_defaults(fn=_import_groundtruth)

    t = sub.add_parser("train", help="train a YOLO detector offline from a model YAML")
    t.add_argument("--data", required=True, help="YOLO dataset YAML")
    t.add_argument("--model", default=str(Path(__file__).with_name("vqi-scratch-yolo.yaml")))
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument("--hours", type=float, default=None, help="time budget; overrides --epochs")
    t.add_argument("--imgsz", type=int, default=320)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--project", default="runs/vqi")
    t.add_argument("--name", default="train")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--patience", type=int, default=100)
    t.add_argument("--mosaic", type=float, default=1.0)
    t.add_argument("--close-mosaic", type=int, default=5)
    t.add_argument("--device", default="cpu", help="'cpu' or a CUDA index such as 0")
    t.add_argument("--init-onnx", default=None, metavar="MODEL.ONNX",
                   help="fine-tune: start from this exported model's weights (same --model YAML)")
    t.add_argument("--fixed-camera", action="store_true",
                   help="augmentations for a fixed industrial camera (see train.FIXED_CAMERA)")
    t.set_defaults(fn=_train)

    e = sub.add_parser("export", help="export weights to ONNX + model.json, check parity")
    e.add_argument("--weights", required=True)
    e.add_argument("--out", required=True, help="output folder for model.onnx + model.json")
    e.add_argument("--imgsz", type=int, default=320)
    e.add_argument("--opset", type=int, default=17)
    e.add_argument("--data", default=None, help="dataset YAML: parity images come from val")
    e.add_argument("--version", default="1.0.0")
    e.add_argument("--tolerance", type=float, default=1e-2,
                   help="max |ORT - PyTorch| for box coordinates, input pixels")
    e.add_argument("--score-tolerance", type=float, default=1e-4,
                   help="max |ORT - PyTorch| for class scores")
    e.add_argument("--train-command", default="")
    e.add_argument("--dataset-desc", default="")
    e.set_defaults(fn=_export)

    q = sub.add_parser("quantize", help="static int8 QDQ quantization with an mAP guard")
    q.add_argument("--model-dir", required=True, help="folder with the float model.onnx/json")
    q.add_argument("--out", required=True)
    q.add_argument("--calib", required=True, help="folder of calibration images")
    q.add_argument("--data", required=True, help="dataset YAML used to compare mAP")
    q.add_argument("--split", default="val", help="split of --data to compare mAP on")
    q.add_argument("--n-calib", type=int, default=64)
    q.add_argument("--max-map50-drop", type=float, default=0.02)
    q.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax",
                   help="activation calibration (default minmax)")
    q.add_argument("--write-refused", action="store_true",
                   help="write the int8 model even when the mAP guard refuses it (marked "
                        "accepted: false), e.g. to score it as a challenger")
    q.set_defaults(fn=_quantize)

    v = sub.add_parser("evaluate", help="mAP of an exported model on the device's detection path")
    v.add_argument("--model-dir", default=str(MODEL_COMPONENT))
    v.add_argument("--data", required=True, help="dataset YAML")
    v.add_argument("--split", default="test")
    v.add_argument("--conf", type=float, default=0.001)
    v.add_argument("--iou", type=float, default=0.6)
    v.add_argument("--limit", type=int, default=None)
    v.add_argument("--reduced-jpeg", action="store_true",
                   help="decode large JPEGs at reduced scale, as JpegReducedDecode does")
    v.add_argument("--region", default=None, metavar="X,Y,W,H", type=_fractions,
                   help="InspectionRegion as the device applies it (fractions of the frame)")
    v.add_argument("--find-part", action="store_true", help="PartFinder AUTO, as the device")
    v.add_argument("--min-map50", type=float, default=None, help="exit 4 if below")
    v.add_argument("--update-metrics", default=None, metavar="KEY",
                   help="store the result under model.json metrics.KEY (re-hashes nothing)")
    v.set_defaults(fn=_evaluate)

    c = sub.add_parser("crop", help="cut a dataset as the device cuts frames (InspectionRegion, "
                       "PartFinder), to train a model for that cut")
    c.add_argument("--data", required=True, help="dataset YAML")
    c.add_argument("--out", required=True)
    c.add_argument("--region", default=None, metavar="X,Y,W,H", type=_fractions,
                   help="InspectionRegion (fractions of the frame)")
    c.add_argument("--find-part", action="store_true", help="PartFinder AUTO")
    c.set_defaults(fn=_crop)

    r = sub.add_parser("reference", help="drift reference statistics into model.json, from "
                       "validation images through the device's detection path")
    r.add_argument("--model-dir", default=str(MODEL_COMPONENT))
    r.add_argument("--data", required=True, help="dataset YAML")
    r.add_argument("--split", default="val")
    r.set_defaults(fn=_reference)

    k = sub.add_parser("package", help="copy an exported model into components/model")
    k.add_argument("--model-dir", default=None, help="the champion (exported model folder)")
    k.add_argument("--challenger", default=None, metavar="DIR",
                   help="an exported model to carry beside the champion as its challenger")
    k.add_argument("--component", default=str(MODEL_COMPONENT))
    k.add_argument("--version", default=None, help="new model/component version")
    k.set_defaults(fn=_package)

    pr = sub.add_parser("promote", help="make the component's challenger its champion")
    pr.add_argument("--component", default=str(MODEL_COMPONENT))
    pr.add_argument("--version", default=None, help="new model/component version")
    pr.set_defaults(fn=_promote)

    cr = sub.add_parser("challenger-report",
                        help="a challenger's record from what the cloud received "
                             "(locally: a runtime root's cloud/ folder)")
    cr.add_argument("--root", required=True, help="runtime root (holding cloud/)")
    cr.add_argument("--json", action="store_true")
    cr.set_defaults(fn=_challenger_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
