"""The uploader's configuration: every recipe key with its safe default and its check."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.config import load, setting

STRATEGIES = ("OverwriteOldestData", "RejectNewData")
PERSISTENCE = ("File", "Memory")

# Stream Manager's own rule for stream names and export identifiers.
_STREAM_NAME = re.compile(r"^[\w ,.\-]{1,255}$")
_BUCKET_LABEL = re.compile(r"^[a-z0-9]([a-z0-9\-]*[a-z0-9])?$")
_IP_LIKE = re.compile(r"^(\d+\.)+\d+$")
# A subset of what Stream Manager's S3ExportTaskDefinition key check accepts (it refuses ').
_PREFIX = re.compile(r"^[A-Za-z0-9!_.*()/=\-]*$")


def _stream_name(value: str) -> bool:
    return bool(_STREAM_NAME.match(value))


def _bucket(value: str) -> bool:
    """Empty (review uploads off) or a name Stream Manager's S3 export accepts."""
    if not value:
        return True
    if not 3 <= len(value) <= 63 or _IP_LIKE.match(value):
        return False
    return all(_BUCKET_LABEL.match(label) for label in value.split("."))


def _fraction(value: float) -> bool:
    return 0.0 <= value <= 1.0


def _positive(value: float) -> bool:
    return value > 0


@dataclass
class UploaderConfig:
    """Recipe keys (PascalCase) bound to typed fields; see README.md for what each one does."""

    result_topic: str = setting("ResultTopic", "vqi/results", bool, "must not be empty")
    ready_topic: str = setting("ReadyTopic", "vqi/ready")  # "" = no readiness announcement
    archived_topic: str = setting("ArchivedTopic", "vqi/archived", bool, "must not be empty")
    # champion/challenger disagreements from Inference: reviewed with both label sets; "" = off
    challenger_topic: str = setting("ChallengerTopic", "vqi/challenger")
    # operator feedback from the Dashboard: the image with the model's and the operator's labels
    feedback_topic: str = setting("FeedbackTopic", "vqi/feedback")  # "" = off
    metrics_topic: str = setting("MetricsTopic", "vqi/metrics")
    metrics_interval_s: float = setting("MetricsIntervalSeconds", 60.0, _positive, "must be > 0")
    thing_name: str = setting("ThingName", "")

    results_stream: str = setting("ResultsStreamName", "vqi-results", _stream_name, "bad name")
    kinesis_enabled: bool = setting("KinesisExportEnabled", True)
    kinesis_stream: str = setting("KinesisStreamName", "vqi-results", bool, "must not be empty")
    kinesis_batch_size: int = setting(
        "KinesisBatchSize", 0, lambda v: 0 <= v <= 500, "0 (unset) or 1..500"
    )
    kinesis_batch_interval_ms: int = setting(
        "KinesisBatchIntervalMillis", 0, lambda v: v == 0 or v >= 60000,
        "0 (export at once) or >= 60000",
    )
    results_max_bytes: int = setting(
        "ResultsStreamMaxBytes", 268435456, lambda v: v >= 1024, "must be >= 1024"
    )

    s3_bucket: str = setting("S3Bucket", "", _bucket, "bad bucket name")
    s3_prefix: str = setting("S3KeyPrefix", "vqi/review", lambda v: bool(_PREFIX.match(v)),
                             "letters, digits and !_.*()/=- only")
    export_stream: str = setting("ExportTaskStreamName", "vqi-review-export-tasks", _stream_name,
                                 "bad name")
    status_stream: str = setting("ExportStatusStreamName", "vqi-review-export-status",
                                 _stream_name, "bad name")
    export_max_bytes: int = setting(
        "ExportStreamMaxBytes", 67108864, lambda v: v >= 1024, "must be >= 1024"
    )
    status_max_bytes: int = setting(
        "StatusStreamMaxBytes", 16777216, lambda v: v >= 1024, "must be >= 1024"
    )
    segment_bytes: int = setting(
        "StreamSegmentBytes", 16777216, lambda v: v >= 1024, "must be >= 1024"
    )
    persistence: str = setting("StreamPersistence", "File", lambda v: v in PERSISTENCE,
                               "File or Memory")
    strategy_on_full: str = setting("StrategyOnFull", "OverwriteOldestData",
                                    lambda v: v in STRATEGIES,
                                    "OverwriteOldestData or RejectNewData")
    flush_on_write: bool = setting("FlushOnWrite", True)

    review_defects: bool = setting("ReviewDefects", True)
    uncertainty_low: float = setting("UncertaintyLow", 0.3, _fraction, "must be 0..1")
    uncertainty_high: float = setting("UncertaintyHigh", 0.6, _fraction, "must be 0..1")
    ok_sample_rate: float = setting("OkSampleRate", 0.01, _fraction, "must be 0..1")
    sample_seed: str = setting("SampleSeed", "vqi")

    export_retry_limit: int = setting("ExportRetryLimit", 5, lambda v: v >= 0, "must be >= 0")
    export_retry_base_s: float = setting("ExportRetryBaseSeconds", 5.0, _positive, "must be > 0")
    export_retry_max_s: float = setting("ExportRetryMaxSeconds", 300.0, _positive, "must be > 0")
    handled_ids_max: int = setting("HandledIdsMax", 10000, lambda v: v >= 10, "must be >= 10")
    staging_dir: str = setting("StagingDir", "")
    request_timeout_s: float = setting(
        "StreamManagerRequestTimeoutSeconds", 10.0, lambda v: v >= 3, "must be >= 3"
    )
    reconnect_max_s: float = setting("ReconnectMaxSeconds", 30.0, _positive, "must be > 0")

    @property
    def review_enabled(self) -> bool:
        return bool(self.s3_bucket)


def parse(raw: dict) -> UploaderConfig:
    """Typed configuration; raises shared.config.ConfigError naming every bad key."""
    from shared.config import ConfigError

    cfg = load(UploaderConfig, raw)
    if cfg.uncertainty_low > cfg.uncertainty_high:
        raise ConfigError("invalid configuration: UncertaintyLow must be <= UncertaintyHigh")
    names = {cfg.results_stream, cfg.export_stream, cfg.status_stream}
    if len(names) != 3:
        raise ConfigError("invalid configuration: the three stream names must differ")
    return cfg


def stream_manager_port(environ: dict) -> int:
    """The port the stream-manager SDK will dial (it reads STREAM_MANAGER_SERVER_PORT, else 8088).

    The nucleus sets no such variable: the recipe's setEnv takes it from Stream Manager's own
    configuration, so a port changed in a deployment reaches this component. Checked here so a
    value that was not interpolated fails with a message instead of inside the SDK.
    """
    from shared.config import ConfigError

    raw = environ.get("STREAM_MANAGER_SERVER_PORT", "8088")
    if not raw.strip().isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(
            f"STREAM_MANAGER_SERVER_PORT is {raw!r}, not a port: the recipe sets it from "
            "{aws.greengrass.StreamManager:configuration:/STREAM_MANAGER_SERVER_PORT}, which "
            "needs aws.greengrass.StreamManager deployed as a dependency")
    return int(raw)
