"""The component's configuration: recipe keys, safe defaults, checks.

Keys in LIVE_FIELDS apply at once after a configuration update; the others (folders) are read at
start, and changing them logs that a restart is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, List

from shared.config import ConfigError, load, setting

MIB = 1024 * 1024
GIB = 1024 * MIB


def _strings(v: List[Any]) -> bool:
    return all(isinstance(p, str) and p for p in v)


def _absolute_or_empty(v: str) -> bool:
    return v == "" or v.startswith("/")


def _non_negative(v: float) -> bool:
    return v >= 0


@dataclass(frozen=True)
class Settings:
    # --- folders (restart) ----------------------------------------------------------------------
    inbox_dir: str = setting("InboxDir", "", _absolute_or_empty,
                             "must be an absolute path, or empty for <work>/inbox")
    state_dir: str = setting("StateDir", "", _absolute_or_empty,
                             "must be an absolute path, or empty for the work folder")
    # --- topics (live) -----------------------------------------------------------------------
    image_topic: str = setting("ImageTopic", "vqi/images", bool, "must not be empty")
    completion_topic: str = setting("CompletionTopic", "vqi/archived", bool, "must not be empty")
    ready_topic: str = setting("ReadyTopic", "vqi/ready")  # "" = wait for timeouts only
    metrics_topic: str = setting("MetricsTopic", "vqi/metrics")  # "" = no metrics
    metrics_interval_s: float = setting("MetricsIntervalSeconds", 60.0, lambda v: v >= 1,
                                        "must be >= 1")
    # --- what is taken (live) ----------------------------------------------------------------
    camera_id: str = setting("CameraId", "camera", bool, "must not be empty")
    camera_from_subfolder: bool = setting("CameraIdFromSubfolder", True)
    include_patterns: list = setting("IncludePatterns", ["*"], _strings,
                                     "must be a list of non-empty glob patterns")
    ignore_patterns: list = setting(
        "IgnorePatterns", [".*", "*.part", "*.tmp", "*.partial", "*.crdownload", "*~"],
        _strings, "must be a list of non-empty glob patterns")
    stability_s: float = setting("StabilitySeconds", 3.0, lambda v: 0 <= v <= 3600,
                                 "must be 0 to 3600")
    incomplete_s: float = setting("IncompleteSeconds", 60.0, lambda v: 0 <= v <= 86400,
                                  "must be 0 to 86400")
    max_file_bytes: int = setting("MaxFileBytes", 50 * MIB, lambda v: v > 0, "must be > 0")
    # --- flow control and retries (live) -----------------------------------------------------
    max_in_flight: int = setting("MaxInFlight", 8, lambda v: 1 <= v <= 10000, "must be 1 to 10000")
    result_timeout_s: float = setting("ResultTimeoutSeconds", 60.0, lambda v: v >= 1,
                                      "must be >= 1")
    max_attempts: int = setting("MaxAttempts", 5, lambda v: v >= 1, "must be >= 1")
    rescan_s: float = setting("RescanSeconds", 30.0, lambda v: v >= 1, "must be >= 1")
    # --- completion and retention (live) -----------------------------------------------------
    done_action: str = setting("DoneAction", "move", lambda v: v in ("move", "delete"),
                               "must be move or delete")
    done_max_age_h: float = setting("DoneMaxAgeHours", 168.0, _non_negative, ">= 0 (0 = no limit)")
    done_max_bytes: int = setting("DoneMaxBytes", GIB, _non_negative, ">= 0 (0 = no limit)")
    failed_max_age_h: float = setting("FailedMaxAgeHours", 720.0, _non_negative,
                                      ">= 0 (0 = no limit)")
    failed_max_bytes: int = setting("FailedMaxBytes", GIB, _non_negative, ">= 0 (0 = no limit)")
    quarantine_max_age_h: float = setting("QuarantineMaxAgeHours", 720.0, _non_negative,
                                          ">= 0 (0 = no limit)")
    quarantine_max_bytes: int = setting("QuarantineMaxBytes", GIB, _non_negative,
                                        ">= 0 (0 = no limit)")
    retention_interval_s: float = setting("RetentionIntervalSeconds", 300.0, lambda v: v >= 1,
                                          "must be >= 1")


RESTART_FIELDS = frozenset({"inbox_dir", "state_dir", "ready_topic"})
LIVE_FIELDS = frozenset(f.name for f in fields(Settings)) - RESTART_FIELDS


def parse(raw: Dict[str, Any]) -> Settings:
    """Settings from the merged configuration; ConfigError names every bad key."""
    return load(Settings, raw)


def restart_needed(old: Settings, new: Settings) -> List[str]:
    """Recipe keys whose change only takes effect after a restart."""
    return [f.metadata["key"] for f in fields(Settings)
            if f.name in RESTART_FIELDS and getattr(old, f.name) != getattr(new, f.name)]


__all__ = ["ConfigError", "LIVE_FIELDS", "Settings", "parse", "restart_needed"]
