"""The component's configuration (recipe keys, defaults, checks) and what it turns into.

Keys marked live apply to the next image after a configuration update; the others are read once at
start (changing them logs that a restart is needed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from shared.config import ConfigError, load, setting

from . import region
from .cpus import usable_cpus
from .drift import DriftSettings
from .model import ModelSpec, SessionSettings
from .postprocess import Thresholds
from .verdict import DefectRule, parse_rules

POLICIES = ("ALL", "DEFECTS", "NONE")
ACCEPTANCE_POLICIES = ("REQUIRE", "WARN", "OFF")
_PROVIDERS_HINT = "a list of onnxruntime execution provider names"


def _unit_or_unset(v: float) -> bool:
    return v == -1 or 0.0 <= v <= 1.0


def _region(value: list) -> bool:
    try:
        region.parse(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class InferenceConfig:
    # --- topics (ImageTopic needs a restart) -------------------------------------------------
    image_topic: str = setting("ImageTopic", "vqi/images", bool, "must not be empty")
    result_topic: str = setting("ResultTopic", "vqi/results", bool, "must not be empty")
    ready_topic: str = setting("ReadyTopic", "vqi/ready")  # "" = no readiness announcement
    metrics_topic: str = setting("MetricsTopic", "vqi/metrics")  # "" = no local metrics
    metrics_interval_s: float = setting("MetricsIntervalSeconds", 60.0, lambda v: v >= 1,
                                        "must be >= 1")
    iot_core_topic: str = setting("IotCoreResultTopic", "vqi/{thing}/results")
    iot_core_metrics_topic: str = setting("IotCoreMetricsTopic", "")  # "" = not sent
    iot_core_policy: str = setting("IotCorePublishPolicy", "DEFECTS", lambda v: v in POLICIES,
                                   "must be ALL, DEFECTS or NONE")
    iot_core_qos: int = setting("IotCoreQos", 1, lambda v: v in (0, 1), "must be 0 or 1")
    alert_topic: str = setting("AlertTopic", "vqi/alerts")  # "" = no local alerts
    iot_core_alert_topic: str = setting("IotCoreAlertTopic", "vqi/{thing}/alerts")  # "" = none
    # --- the golden-sample gate (live) ----------------------------------------------------------
    acceptance_policy: str = setting("AcceptancePolicy", "REQUIRE",
                                     lambda v: v in ACCEPTANCE_POLICIES,
                                     "must be REQUIRE, WARN or OFF")
    # --- drift and process alarms (live; drift.py) ----------------------------------------------
    drift_window: int = setting("DriftWindowImages", 200, lambda v: v == 0 or 10 <= v <= 100000,
                                "must be 0 (off) or 10 to 100000")
    drift_psi: float = setting("DriftPsiThreshold", 0.25, lambda v: v > 0, "must be > 0")
    drift_sigmas: float = setting("DriftPChartSigmas", 3.0, lambda v: v > 0, "must be > 0")
    drift_tolerance: float = setting("DriftInputTolerance", 0.1, lambda v: v >= 0, "must be >= 0")
    expected_defect_rate: float = setting("ExpectedDefectRate", -1.0, _unit_or_unset,
                                          "must be in [0, 1] (or -1 for the model's reference)")
    alert_interval_s: float = setting("AlertMinIntervalSeconds", 60.0, lambda v: v >= 0,
                                      "must be >= 0")
    # --- champion/challenger (live; challenger.py) ---------------------------------------------
    challenger_rate: float = setting("ChallengerSampleRate", 1.0, lambda v: 0 <= v <= 1,
                                     "must be in [0, 1]")
    challenger_topic: str = setting("ChallengerTopic", "vqi/challenger")  # "" = no reviews
    iot_core_challenger_topic: str = setting("IotCoreChallengerTopic", "vqi/{thing}/challenger")
    max_disagreement_images: int = setting("MaxDisagreementImages", 100,
                                           lambda v: 0 <= v <= 100000, "must be 0 to 100000")
    # --- detection (live) ----------------------------------------------------------------------
    confidence: float = setting("ConfidenceThreshold", -1.0, _unit_or_unset,
                                "must be in [0, 1] (or -1 for the model's value)")
    iou: float = setting("IouThreshold", -1.0, _unit_or_unset,
                         "must be in [0, 1] (or -1 for the model's value)")
    max_detections: int = setting("MaxDetections", 0, lambda v: 0 <= v <= 10000,
                                  "must be 0 (model's value) to 10000")
    class_confidence: dict = setting("ClassConfidenceThresholds", {})
    agnostic_nms: bool = setting("AgnosticNms", False)
    defect_rules: list = setting("DefectRules", [])
    annotated_dir: str = setting("AnnotatedImageDir", "")  # "" = no annotated images
    max_image_bytes: int = setting("MaxImageBytes", 64 * 1024 * 1024, lambda v: v > 0, "> 0")
    max_image_pixels: int = setting("MaxImagePixels", 50_000_000, lambda v: v > 0, "> 0")
    jpeg_reduced_decode: bool = setting("JpegReducedDecode", False)
    inspection_region: list = setting("InspectionRegion", [], _region,
                                      "must be [] (whole frame) or [x, y, width, height] as "
                                      "fractions of the frame that fit in it")
    part_finder: str = setting("PartFinder", "OFF", lambda v: v in ("OFF", "AUTO"),
                               "must be OFF or AUTO")
    # --- runtime (restart) --------------------------------------------------------------------
    intra_op_threads: int = setting("IntraOpThreads", 0, lambda v: v >= 0, ">= 0, 0 = auto")
    inference_threads: int = setting("InferenceThreads", 0, lambda v: 0 <= v <= 16,
                                     "0 (auto) to 16")
    inter_op_threads: int = setting("InterOpThreads", 1, lambda v: v >= 0, ">= 0")
    graph_optimization: str = setting(
        "GraphOptimizationLevel", "ALL", lambda v: v in ("DISABLE", "BASIC", "EXTENDED", "ALL"),
        "must be DISABLE, BASIC, EXTENDED or ALL")
    execution_providers: list = setting(
        "ExecutionProviders", ["CPUExecutionProvider"],
        lambda v: all(isinstance(p, str) for p in v), _PROVIDERS_HINT)
    allow_spinning: bool = setting("OrtAllowSpinning", False)
    decode_threads: int = setting("DecodeThreads", 0, lambda v: 0 <= v <= 16, "0 (auto) to 16")
    prepared_queue: int = setting("MaxPreparedImages", 2, lambda v: 1 <= v <= 64, "1 to 64")
    pending_queue: int = setting("MaxPendingEvents", 1000, lambda v: v >= 1, ">= 1")
    recent_ids: int = setting("RecentImageIds", 10000, lambda v: v >= 1, ">= 1")


LIVE_FIELDS = frozenset({
    "result_topic", "metrics_topic", "metrics_interval_s", "iot_core_topic",
    "iot_core_metrics_topic", "iot_core_policy", "iot_core_qos", "confidence", "iou",
    "max_detections", "class_confidence", "agnostic_nms", "defect_rules", "annotated_dir",
    "max_image_bytes", "max_image_pixels", "jpeg_reduced_decode", "inspection_region",
    "part_finder",
    "recent_ids", "alert_topic", "iot_core_alert_topic", "acceptance_policy", "drift_window",
    "drift_psi", "drift_sigmas", "drift_tolerance", "expected_defect_rate", "alert_interval_s",
    "challenger_rate", "challenger_topic", "iot_core_challenger_topic", "max_disagreement_images",
})


@dataclass(frozen=True)
class Effective:
    """Configuration resolved against the model: what the pipeline and service act on."""

    config: InferenceConfig
    thresholds: Thresholds
    rules: Tuple[DefectRule, ...]


def parse(raw: Dict[str, Any]) -> InferenceConfig:
    return load(InferenceConfig, {k: v for k, v in raw.items() if k != "accessControl"})


def resolve(config: InferenceConfig, spec: ModelSpec) -> Effective:
    """Thresholds and rules for this model; ConfigError when they do not fit it."""
    names = list(spec.class_names)
    base = spec.confidence if config.confidence < 0 else config.confidence
    per_class = np.full(len(names), base, dtype=np.float32)
    errors: List[str] = []
    for source, mapping in (("model.json", spec.per_class), ("ClassConfidenceThresholds",
                                                             config.class_confidence)):
        for name, value in mapping.items():
            if name not in names:
                errors.append(f"{source}: unknown class {name!r} (classes: {names})")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0.0 <= value <= 1.0):
                errors.append(f"{source}: threshold for {name!r} must be in [0, 1]")
            else:
                per_class[names.index(name)] = float(value)
    try:
        rules = parse_rules(config.defect_rules, names)
    except ValueError as exc:
        errors.append(str(exc))
        rules = ()
    if errors:
        raise ConfigError("invalid configuration: " + "; ".join(errors))
    thresholds = Thresholds(
        per_class=per_class,
        iou=spec.iou if config.iou < 0 else config.iou,
        max_detections=config.max_detections or spec.max_detections,
        agnostic=config.agnostic_nms,
    )
    return Effective(config, thresholds, rules)


def thread_layout(config: InferenceConfig, cpus: Optional[int] = None) -> Tuple[int, int]:
    """(inference threads, intra-op threads per session.run) with 0 = auto resolved.

    Auto runs two session.run calls at once with cpus // 2 intra-op threads each: on two cores
    (the target device) that is two single-threaded runs, which measured faster than one run
    with two intra-op threads (no thread-pool barrier per operator, and the decode thread
    slots in between runs instead of stalling a parallel operator).
    """
    cpus = cpus or usable_cpus()
    workers = config.inference_threads or (2 if cpus >= 2 else 1)
    intra = config.intra_op_threads or max(1, cpus // workers)
    return workers, intra


def decode_threads(config: InferenceConfig, cpus: Optional[int] = None) -> int:
    """DecodeThreads, 0 = auto: one per four usable CPUs (at least one, at most 16).

    At 320x320 one thread decodes 5-10x faster than the model runs; camera-size JPEGs and PNGs
    cost as much as the model, so machines with more cores get more decoders.
    """
    return config.decode_threads or min(16, max(1, (cpus or usable_cpus()) // 4))


def session_settings(config: InferenceConfig) -> SessionSettings:
    return SessionSettings(
        intra_op_threads=thread_layout(config)[1],
        inter_op_threads=config.inter_op_threads,
        graph_optimization=config.graph_optimization,
        execution_providers=tuple(config.execution_providers),
        allow_spinning=config.allow_spinning,
    )


def restart_needed(old: InferenceConfig, new: InferenceConfig) -> List[str]:
    """Keys whose change only takes effect after a restart."""
    out: List[str] = []
    for f in fields(InferenceConfig):
        if f.name not in LIVE_FIELDS and getattr(old, f.name) != getattr(new, f.name):
            out.append(f.metadata["key"])
    return out


def drift_settings(config: InferenceConfig) -> DriftSettings:
    return DriftSettings(window=config.drift_window, psi_threshold=config.drift_psi,
                         p_chart_sigmas=config.drift_sigmas,
                         input_tolerance=config.drift_tolerance,
                         expected_defect_rate=config.expected_defect_rate,
                         min_interval_s=config.alert_interval_s)


def fingerprint(config: InferenceConfig) -> str:
    """sha256 of the configuration in force (canonical JSON): results say which one made them."""
    text = json.dumps(asdict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def iot_topic(template: str, thing: str) -> Optional[str]:
    """IoT Core topic for this thing ("{thing}" substituted); None when disabled."""
    return template.replace("{thing}", thing) if template else None
