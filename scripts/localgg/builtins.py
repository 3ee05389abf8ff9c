"""The components the runtime itself provides, and their configuration as a deployment sets it.

On a device `aws.greengrass.Nucleus` and `aws.greengrass.StreamManager` are components whose
configuration a deployment merges like any other. Only the keys below have an effect locally;
the rest of the real components' configuration (endpoints, MQTT, JVM options, ...) is not
emulated, and a site file that names another key is refused by `scripts/make-deployment`.
"""

from __future__ import annotations

from typing import Any

NUCLEUS = "aws.greengrass.Nucleus"
STREAM_MANAGER = "aws.greengrass.StreamManager"

# What `--component-default-user ggc_user:ggc_group` leaves in a fresh nucleus's configuration,
# plus interpolateComponentConfiguration with its default (DeviceConfiguration.java).
NUCLEUS_DEFAULTS: dict[str, Any] = {
    "interpolateComponentConfiguration": False,
    "runWithDefault": {"posixUser": "ggc_user:ggc_group"},
}

# The Stream Manager recipe's defaults for the keys that matter here (values are strings there).
STREAM_MANAGER_DEFAULTS: dict[str, Any] = {
    "STREAM_MANAGER_SERVER_PORT": "8088",
    "STREAM_MANAGER_AUTHENTICATE_CLIENT": "true",
}

BUILTIN_DEFAULTS: dict[str, dict[str, Any]] = {
    NUCLEUS: NUCLEUS_DEFAULTS,
    STREAM_MANAGER: STREAM_MANAGER_DEFAULTS,
}


def truthy(value: Any) -> bool:
    """Coerce.toBoolean: true, "true" (any case), "yes", "1" and non-zero numbers are true."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    return str(value).strip().lower() in ("true", "yes", "1")


def parse_port(value: Any) -> int:
    try:
        port = int(str(value).strip())
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"{STREAM_MANAGER} STREAM_MANAGER_SERVER_PORT {value!r} is not a port")
    return port
