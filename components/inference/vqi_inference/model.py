"""Load the detector from the model component's folder: model.json, sha256 check, ORT session.

Nothing is handed to onnxruntime before the file's sha256 matches model.json, and the session's
real input/output signature is checked against the metadata, so a wrong, tampered or
incompatible model stops the component with one clear message instead of wrong results.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from shared.component import StartError

from .preprocess import Normalisation

SUPPORTED_SCHEMA_VERSIONS = (1,)


class ModelError(StartError):
    """The model folder cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class LetterboxSpec:
    pad_value: int = 114
    center: bool = True
    scaleup: bool = True
    stride: int = 32
    auto: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """The parts of model.json the service relies on."""

    directory: str
    name: str
    version: str
    sha256: str
    onnx_path: str
    class_names: Tuple[str, ...]
    input_name: str
    input_shape: Tuple[int, ...]
    input_dtype: str
    imgsz: Tuple[int, int]
    normalisation: Normalisation
    letterbox: LetterboxSpec
    output_name: str
    output_shape: Tuple[Any, ...]
    confidence: float
    iou: float
    max_detections: int
    per_class: Dict[str, float] = field(default_factory=dict)
    reference: Optional[Dict[str, Any]] = None  # drift reference statistics (drift.Reference)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _get(data: Dict[str, Any], path: str, kind: Any, default: Any = ...) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not ...:
                return default
            raise ModelError(f"model.json: missing field {path!r}")
        node = node[part]
    if not isinstance(node, kind) or (kind is not bool and isinstance(node, bool)):
        raise ModelError(f"model.json: field {path!r} has the wrong type ({type(node).__name__})")
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unit(value: Any, path: str) -> float:
    """A threshold from model.json: a number in [0, 1], else ModelError."""
    if not _is_number(value) or not 0.0 <= value <= 1.0:
        raise ModelError(f"model.json: {path} must be a number in [0, 1], got {value!r}")
    return float(value)


def read_spec(model_dir: str) -> ModelSpec:
    """Parse and check model.json in `model_dir` (does not hash or open the ONNX file)."""
    if not model_dir:
        raise ModelError("no model folder: VQI_MODEL_DIR is not set (expected the model "
                         "component's artifacts path)")
    meta_path = os.path.join(model_dir, "model.json")
    try:
        with open(meta_path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise ModelError(f"model metadata not found: {meta_path}") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"model metadata unreadable: {meta_path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"model metadata is not a JSON object: {meta_path}")
    return parse_spec(data, model_dir)


def parse_spec(data: Dict[str, Any], model_dir: str) -> ModelSpec:
    """Check a model.json document whose ONNX file lives in `model_dir`."""
    schema = _get(data, "schema_version", int)
    if schema not in SUPPORTED_SCHEMA_VERSIONS:
        raise ModelError(f"model.json schema_version {schema} is not supported "
                         f"(supported: {SUPPORTED_SCHEMA_VERSIONS})")
    task = _get(data, "task", str)
    if task != "detect":
        raise ModelError(f"model task {task!r} is not supported (only 'detect')")
    names = _get(data, "class_names", list)
    if not names or not all(isinstance(n, str) for n in names):
        raise ModelError("model.json: class_names must be a non-empty list of strings")
    onnx_file = _get(data, "onnx_file", str)
    if os.path.basename(onnx_file) != onnx_file:
        raise ModelError(f"model.json: onnx_file must be a file name, got {onnx_file!r}")
    sha = _get(data, "sha256", str).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ModelError("model.json: sha256 is not a 64-digit hex digest")

    inp = _get(data, "input", dict)
    layout = _get(inp, "layout", str, "NCHW")
    if layout != "NCHW":
        raise ModelError(f"model input layout {layout!r} is not supported (only NCHW)")
    dtype = _get(inp, "dtype", str, "float32")
    if dtype not in ("float32", "float16"):
        raise ModelError(f"model input dtype {dtype!r} is not supported")
    shape = tuple(_get(inp, "shape", list))
    imgsz = tuple(_get(inp, "imgsz", list, list(shape[2:4])))
    if len(imgsz) != 2 or not all(isinstance(v, int) and v > 0 for v in imgsz):
        raise ModelError(f"model.json: input.imgsz must be [H, W], got {list(imgsz)}")
    color = _get(inp, "color", str, "RGB").upper()
    if color not in ("RGB", "BGR"):
        raise ModelError(f"model input color {color!r} is not supported")
    lb = _get(inp, "letterbox", dict, {})
    try:
        letterbox = LetterboxSpec(
            pad_value=int(lb.get("pad_value", 114)), center=bool(lb.get("center", True)),
            scaleup=bool(lb.get("scaleup", True)), stride=int(lb.get("stride", 32)),
            auto=bool(lb.get("auto", False)),
        )
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model.json: input.letterbox has a bad value: {exc}") from None
    for key in ("mean", "std"):
        values = _get(inp, key, list, [])
        if values and (len(values) != 3 or not all(_is_number(v) for v in values)):
            raise ModelError(f"model.json: input.{key} must be 3 numbers, got {values!r}")
    if letterbox.auto:
        raise ModelError("model.json: letterbox.auto=true needs a dynamic input; not supported")

    out = _get(data, "output", dict)
    if _get(out, "nms_included", bool, False):
        raise ModelError("models with NMS inside the graph are not supported (export nms=False)")
    if _get(out, "has_objectness", bool, False):
        raise ModelError("models with an objectness score (YOLOv5 style) are not supported")
    if _get(out, "layout", str, "boxes_first") != "boxes_first":
        raise ModelError("model output layout must be 'boxes_first' ([1, 4+nc, N])")
    if _get(out, "box_format", str, "cxcywh") != "cxcywh":
        raise ModelError("model output box_format must be 'cxcywh'")
    if _get(out, "coordinates", str, "input_pixels") != "input_pixels":
        raise ModelError("model output coordinates must be 'input_pixels'")

    thr = _get(data, "thresholds", dict, {})
    per_class = thr.get("per_class") or {}
    if not isinstance(per_class, dict):
        raise ModelError("model.json: thresholds.per_class must be an object")
    max_det = thr.get("max_detections", 100)
    if isinstance(max_det, bool) or not isinstance(max_det, int) or max_det < 1:
        raise ModelError(f"model.json: thresholds.max_detections must be an integer >= 1, "
                         f"got {max_det!r}")
    return ModelSpec(
        directory=model_dir,
        name=_get(data, "name", str),
        version=_get(data, "version", str),
        sha256=sha,
        onnx_path=os.path.join(model_dir, onnx_file),
        class_names=tuple(names),
        input_name=_get(inp, "name", str, "images"),
        input_shape=shape,
        input_dtype=dtype,
        imgsz=(int(imgsz[0]), int(imgsz[1])),
        normalisation=Normalisation.from_values(
            color, _get(inp, "scale", (int, float), 1.0 / 255.0),
            _get(inp, "mean", list, [0.0, 0.0, 0.0]), _get(inp, "std", list, [1.0, 1.0, 1.0]),
        ),
        letterbox=letterbox,
        output_name=_get(out, "name", str, "output0"),
        output_shape=tuple(_get(out, "shape", list, [])),
        confidence=_unit(thr.get("confidence", 0.25), "thresholds.confidence"),
        iou=_unit(thr.get("iou", 0.45), "thresholds.iou"),
        max_detections=max_det,
        per_class={str(k): _unit(v, f"thresholds.per_class.{k}") for k, v in per_class.items()},
        reference=data["reference"] if isinstance(data.get("reference"), dict) else None,
    )


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(spec: ModelSpec) -> None:
    """Refuse a missing or tampered ONNX file (sha256 must match model.json)."""
    if not os.path.isfile(spec.onnx_path):
        raise ModelError(f"model file not found: {spec.onnx_path}")
    actual = file_sha256(spec.onnx_path)
    if actual != spec.sha256:
        raise ModelError(
            f"model file {spec.onnx_path} does not match model.json: sha256 {actual} != "
            f"{spec.sha256}; refusing to load a modified or corrupt model"
        )


@dataclass(frozen=True)
class SessionSettings:
    """onnxruntime session options; 0 threads means onnxruntime's own choice."""

    intra_op_threads: int = 0
    inter_op_threads: int = 1
    graph_optimization: str = "ALL"  # DISABLE | BASIC | EXTENDED | ALL
    execution_providers: Tuple[str, ...] = ("CPUExecutionProvider",)
    allow_spinning: bool = False


_OPT_LEVELS = ("DISABLE", "BASIC", "EXTENDED", "ALL")


def session_options(settings: SessionSettings) -> Any:
    import onnxruntime as ort

    if settings.graph_optimization not in _OPT_LEVELS:
        raise ModelError(f"graph optimisation level must be one of {_OPT_LEVELS}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, settings.intra_op_threads)
    opts.inter_op_num_threads = max(0, settings.inter_op_threads)
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, "ORT_" + ("ENABLE_" if settings.graph_optimization != "DISABLE"
                                                else "") + settings.graph_optimization
    )
    # Spinning workers burn the core the decode thread needs; off by default on small devices.
    opts.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0"
    )
    opts.add_session_config_entry(
        "session.inter_op.allow_spinning", "1" if settings.allow_spinning else "0"
    )
    return opts


def choose_providers(wanted: Sequence[str]) -> List[str]:
    """Requested providers that this onnxruntime build has, CPU always last as a fallback."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    chosen = [p for p in wanted if p in available and p != "CPUExecutionProvider"]
    return chosen + ["CPUExecutionProvider"]


def _dims_match(expected: Sequence[Any], actual: Sequence[Any]) -> bool:
    if len(expected) != len(actual):
        return False
    return all(
        not isinstance(a, int) or not isinstance(e, int) or a == e for e, a in zip(expected, actual)
    )


@dataclass
class LoadedModel:
    spec: ModelSpec
    session: Any
    num_boxes: int
    providers: List[str]


def open_session(spec: ModelSpec, settings: SessionSettings) -> LoadedModel:
    """Create the session (after the sha256 check) and check its signature against the spec."""
    import onnxruntime as ort

    verify_file(spec)
    providers = choose_providers(settings.execution_providers)
    try:
        session = ort.InferenceSession(
            spec.onnx_path, sess_options=session_options(settings), providers=providers
        )
    except Exception as exc:  # onnxruntime raises several private exception types
        raise ModelError(f"onnxruntime cannot load {spec.onnx_path}: {exc}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ModelError(f"model has {len(inputs)} inputs; exactly one image input expected")
    inp = inputs[0]
    if inp.name != spec.input_name:
        raise ModelError(f"model input is named {inp.name!r}, model.json says {spec.input_name!r}")
    want_type = "tensor(float)" if spec.input_dtype == "float32" else "tensor(float16)"
    if inp.type != want_type:
        raise ModelError(f"model input type {inp.type} does not match model.json {want_type}")
    want_shape = [1, 3, spec.imgsz[0], spec.imgsz[1]]
    if not _dims_match(want_shape, inp.shape):
        raise ModelError(f"model input shape {inp.shape} does not match imgsz {list(spec.imgsz)}")
    out = next((o for o in outputs if o.name == spec.output_name), None)
    if out is None:
        raise ModelError(f"model has no output named {spec.output_name!r} "
                         f"(outputs: {[o.name for o in outputs]})")
    if len(out.shape) != 3 or not _dims_match([1, 4 + spec.num_classes], out.shape[:2]):
        raise ModelError(
            f"model output shape {out.shape} does not fit {spec.num_classes} classes "
            f"(expected [1, {4 + spec.num_classes}, N]: no NMS, no objectness)"
        )
    if spec.output_shape and not _dims_match(spec.output_shape, out.shape):
        raise ModelError(f"model output shape {out.shape} differs from model.json "
                         f"{list(spec.output_shape)}")
    num_boxes = out.shape[2] if isinstance(out.shape[2], int) else -1
    return LoadedModel(spec, session, num_boxes, session.get_providers())


def load(model_dir: Optional[str], settings: SessionSettings) -> LoadedModel:
    """read_spec + open_session."""
    return open_session(read_spec(model_dir or ""), settings)
