"""The dashboard's configuration: every recipe key with its safe default and its check."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import List, Mapping, Optional, Tuple

from shared.config import ConfigError, load, setting

MIN_TOKEN_CHARS = 16


def _port(value: int) -> bool:
    return 0 <= value < 65536


def _address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _hours(value: list) -> bool:
    return bool(value) and all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h < 24
                               for h in value) and len(set(value)) == len(value)


def _absolute_folders(value: list) -> bool:
    return all(isinstance(v, str) and os.path.isabs(v) for v in value)


@dataclass(frozen=True)
class DashboardConfig:
    """Recipe keys (PascalCase) bound to typed fields; see README.md for what each one does."""

    result_topic: str = setting("ResultTopic", "vqi/results", bool, "must not be empty")
    metrics_topic: str = setting("MetricsTopic", "vqi/metrics")  # "" = neither read nor sent
    alert_topic: str = setting("AlertTopic", "vqi/alerts")  # "" = no alarms shown
    feedback_topic: str = setting("FeedbackTopic", "vqi/feedback", bool, "must not be empty")
    metrics_interval_s: float = setting("MetricsIntervalSeconds", 60.0, lambda v: v >= 1,
                                        "must be >= 1")
    thing_name: str = setting("ThingName", "")

    bind_address: str = setting("BindAddress", "127.0.0.1", _address,
                                "an IP address (127.0.0.1: this device only; 0.0.0.0: the LAN)")
    port: int = setting("Port", 8090, _port, "0 (any free port) or 1..65535")
    token_file: str = setting("TokenFile", "", lambda v: not v or os.path.isabs(v),
                              "an absolute path or empty")
    token: str = setting("Token", "", secret=True)
    allowed_hosts: list = setting("AllowedHosts", [], lambda v: all(
        isinstance(h, str) and h for h in v), "a list of host names")

    image_dirs: list = setting("ImageDirs", [], _absolute_folders,
                               "a list of absolute folders")
    history_max_rows: int = setting("HistoryMaxRows", 200000, lambda v: v >= 100,
                                    "must be >= 100")
    history_max_age_h: float = setting("HistoryMaxAgeHours", 168.0, lambda v: v > 0,
                                       "must be > 0")
    shift_start_hours: list = setting("ShiftStartHours", [6, 14, 22], _hours,
                                      "distinct whole hours 0..23 (local time)")
    latest_defects: int = setting("LatestDefects", 12, lambda v: 1 <= v <= 100, "1..100")
    page_size_max: int = setting("PageSizeMax", 200, lambda v: 10 <= v <= 1000, "10..1000")
    max_request_bytes: int = setting("MaxRequestBytes", 16384, lambda v: 1024 <= v <= 1048576,
                                     "1024..1048576")
    max_event_clients: int = setting("MaxEventClients", 8, lambda v: 1 <= v <= 64, "1..64")

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.bind_address).is_loopback


def parse(raw: Mapping) -> DashboardConfig:
    """Typed configuration; raises ConfigError naming every bad key."""
    cfg = load(DashboardConfig, dict(raw))
    if not cfg.loopback and not (cfg.token_file or cfg.token):
        raise ConfigError(f"invalid configuration: BindAddress={cfg.bind_address!r} opens the "
                          "dashboard to the network: set TokenFile (or Token) as well")
    return cfg


def read_token(cfg: DashboardConfig) -> Optional[str]:
    """The LAN token (TokenFile first, then Token), or None on loopback without one.

    Listening beyond loopback without a token of at least MIN_TOKEN_CHARS is refused: anyone on
    the line's network could otherwise send feedback. The token's value is never logged.
    """
    token = cfg.token
    if cfg.token_file:
        try:
            with open(cfg.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise ConfigError(f"invalid configuration: TokenFile={cfg.token_file!r}: cannot "
                              f"read it ({exc.strerror})") from exc
    if token and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"invalid configuration: the token (TokenFile or Token) must have at "
                          f"least {MIN_TOKEN_CHARS} characters")
    if not token and not cfg.loopback:
        raise ConfigError(f"invalid configuration: BindAddress={cfg.bind_address!r} opens the "
                          "dashboard to the network: set TokenFile (or Token) as well")
    return token or None


def image_roots(cfg: DashboardConfig, environ: Mapping[str, str]) -> Tuple[str, ...]:
    """The folders images are served from: ImageDirs, else ImageSource's state folder (its
    StateDir, else its work folder), which the recipe passes in from ImageSource's own
    configuration."""
    folders: List[str] = list(cfg.image_dirs)
    if not folders:
        state = environ.get("VQI_IMAGE_STATE_DIR", "")
        work = environ.get("VQI_IMAGE_WORK_DIR", "")
        for value in (state, work):
            if value and os.path.isabs(value) and "{" not in value:
                folders.append(value)
                break
    return tuple(os.path.realpath(f) for f in folders)
