"""Put an exported model into the com.example.vqi.Model component and refresh its docs.

The component folder keeps exactly one model (model.onnx + model.json); verify_model.py, which
the Install step runs, is the same check applied here before anything is copied, so a model
that would fail on the device never lands in the repo. The generated sections of README.md and
MODEL_CARD.md sit between ``<!-- model:begin -->`` and ``<!-- model:end -->``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

BEGIN, END = "<!-- model:begin -->", "<!-- model:end -->"
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


def _verifier(component: Path) -> object:
    """Load the component's own verify_model.py (the exact code the device runs)."""
    spec = importlib.util.spec_from_file_location("vqi_verify_model",
                                                  component / "verify_model.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no verify_model.py in {component}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def summary_markdown(meta: dict) -> str:
    """The generated 'current model' block for README.md and MODEL_CARD.md."""
    inp, out, thr = meta["input"], meta["output"], meta["thresholds"]
    lines = [
        BEGIN,
        "| field | value |",
        "|---|---|",
        f"| name / version | `{meta['name']}` {meta['version']} |",
        f"| classes | {', '.join(meta['class_names'])} |",
        f"| file | `{meta['onnx_file']}` ({meta.get('size_bytes', 0) / 1e6:.2f} MB, "
        f"{meta['export'].get('precision', 'fp32')}, opset {meta['export'].get('opset')}) |",
        f"| sha256 | `{meta['sha256']}` |",
        f"| input | `{inp['name']}` {inp['shape']} {inp['dtype']} {inp['color']} "
        f"{inp['layout']}, x{inp['scale']:.6g}, letterbox pad {inp['letterbox']['pad_value']} |",
        f"| output | `{out['name']}` {out['shape']} {out['layout']} {out['box_format']} in "
        f"{out['coordinates']}, NMS {'in graph' if out['nms_included'] else 'not included'} |",
        f"| thresholds | confidence {thr['confidence']}, NMS IoU {thr['iou']}, "
        f"max {thr['max_detections']} detections |",
    ]
    for key, m in sorted(meta.get("metrics", {}).items()):
        if isinstance(m, dict) and "mAP50" in m:
            extra = f", {m['images']} images" if "images" in m else ""
            op = m.get("operating_point") or {}
            if m["mAP50"] is None:  # a split with no labelled box: false alarms are the figure
                lines.append(f"| metrics: {key} | {op.get('defect_free_flagged')} of "
                             f"{op.get('defect_free_images')} defect-free images flagged at "
                             f"confidence {op.get('confidence')} |")
                continue
            lines.append(f"| metrics: {key} | mAP50 {m['mAP50']}, mAP50-95 {m.get('mAP50-95')}"
                         f"{extra} |")
    par = meta["export"].get("parity")
    if par:
        lines.append(f"| ONNX vs PyTorch | max abs diff {par['max_abs_diff']:.2e} on "
                     f"{par.get('images')} images (tolerance {par['tolerance']}) |")
    lines.append(END)
    return "\n".join(lines)


def refresh_docs(component: Path, meta: dict) -> list[Path]:
    """Replace the generated block in README.md and MODEL_CARD.md (where the markers exist)."""
    changed = []
    block = summary_markdown(meta)
    for name in ("README.md", "MODEL_CARD.md"):
        doc = component / name
        if not doc.exists():
            continue
        text = doc.read_text()
        if BEGIN not in text or END not in text:
            continue
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        doc.write_text(head + block + tail)
        changed.append(doc)
    return changed


def _set_recipe_version(recipe: Path, version: str) -> None:
    text = recipe.read_text()
    new, n = re.subn(r'(?m)^ComponentVersion:.*$', f'ComponentVersion: "{version}"', text)
    if n != 1:
        raise ValueError(f"{recipe}: expected exactly one ComponentVersion line")
    recipe.write_text(new)


def package(model_dir: Path, component: Path, version: str | None = None) -> Path:
    """Verify model_dir, then copy model.onnx/model.json into component and update docs."""
    model_dir, component = Path(model_dir), Path(component)
    verifier = _verifier(component)
    try:
        meta = verifier.verify(model_dir)
    except verifier.ModelInvalid as exc:
        raise ValueError(f"refusing to package {model_dir}: {exc}") from exc
    if version is not None:
        if not _SEMVER.match(version):
            raise ValueError(f"version must be MAJOR.MINOR.PATCH, got {version!r}")
        meta["version"] = version
    if model_dir.resolve() != component.resolve():
        shutil.copy2(model_dir / meta["onnx_file"], component / "model.onnx")
    meta["onnx_file"] = "model.onnx"
    (component / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    if version is not None and (component / "recipe.yaml").exists():
        _set_recipe_version(component / "recipe.yaml", version)
    verifier.verify(component)
    refresh_docs(component, meta)
    return component


def record_metrics(model_dir: Path, key: str, result: dict) -> None:
    """Store an evaluation result in model.json (sha256 covers model.onnx only) + docs."""
    path = Path(model_dir) / "model.json"
    meta = json.loads(path.read_text())
    meta.setdefault("metrics", {})[key] = {
        k: result[k] for k in ("mAP50", "mAP50-95", "mAP50_allpoint", "images", "instances",
                               "operating_point", "ap_method", "ms_per_image", "split",
                               "command")
        if k in result}
    ds = Path(result.get("data", ""))
    info = ds.parent / "dataset.json"
    if info.exists():
        d = json.loads(info.read_text())
        counts = d.get("counts", d.get("images"))  # synth.py / groundtruth.py
        meta["metrics"][key]["dataset"] = f"{d['generator']} seed={d['seed']} counts={counts}"
        if d.get("rule"):
            meta["metrics"][key]["split_rule"] = d["rule"]
    path.write_text(json.dumps(meta, indent=2) + "\n")
    refresh_docs(Path(model_dir), meta)


# ----- champion/challenger -------------------------------------------------------------------
CHALLENGER = "challenger"
_SAMPLES_ARTIFACT = ("      - URI: s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/samples.zip\n"
                     "        Unarchive: ZIP\n")
_CHALLENGER_ARTIFACT = ("      - URI: s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/"
                        "challenger.zip\n        Unarchive: ZIP\n")


def _recipe_challenger(recipe: Path, present: bool) -> None:
    """List challenger.zip among the artifacts (after samples.zip), or take it out."""
    text = recipe.read_text()
    has = _CHALLENGER_ARTIFACT in text
    if present and not has:
        if _SAMPLES_ARTIFACT not in text:
            raise ValueError(f"{recipe}: no samples.zip artifact to put challenger.zip after")
        text = text.replace(_SAMPLES_ARTIFACT, _SAMPLES_ARTIFACT + _CHALLENGER_ARTIFACT, 1)
    elif not present and has:
        text = text.replace(_CHALLENGER_ARTIFACT, "", 1)
    recipe.write_text(text)


def add_challenger(challenger_dir: Path, component: Path) -> dict:
    """Verify an exported model and put it beside the champion as the component's challenger
    (components/model/challenger/, artifact challenger.zip): Inference scores live images with
    it silently, and only the champion acts."""
    challenger_dir, component = Path(challenger_dir), Path(component)
    verifier = _verifier(component)
    try:
        meta = verifier.verify(challenger_dir)
    except verifier.ModelInvalid as exc:
        raise ValueError(f"refusing {challenger_dir} as a challenger: {exc}") from exc
    folder = component / CHALLENGER
    if folder.resolve() != challenger_dir.resolve():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        shutil.copy2(challenger_dir / meta["onnx_file"], folder / "model.onnx")
    meta["onnx_file"] = "model.onnx"
    (folder / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    verifier.verify(folder)
    if (component / "recipe.yaml").exists():
        _recipe_challenger(component / "recipe.yaml", True)
    return meta


def promote(component: Path, version: str | None = None) -> dict:
    """Make the challenger the champion: its model replaces model.onnx/model.json, the
    challenger folder and artifact go. The acceptance set stays; the drift reference belonged
    to the old model, so it is dropped (recompute it with `scripts/model reference`)."""
    component = Path(component)
    folder = component / CHALLENGER
    if not (folder / "model.json").is_file():
        raise ValueError(f"no challenger to promote in {folder}")
    verifier = _verifier(component)
    meta = verifier.verify(folder)
    meta.pop("reference", None)
    shutil.copy2(folder / "model.onnx", component / "model.onnx")
    (component / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(folder)
    if (component / "recipe.yaml").exists():
        _recipe_challenger(component / "recipe.yaml", False)
    package(component, component, version)  # the version, the checks and the docs, once
    return json.loads((component / "model.json").read_text())
