"""Topic rules: MQTT topic filters (delivery) and Greengrass resource patterns (authorization).

Two different wildcard languages meet here, exactly as on a real core device:

* Subscriptions use MQTT filters: ``+`` is one whole level, ``#`` is the last level and matches
  the parent and everything below it; neither matches a first level starting with ``$``.
* ``accessControl`` resources use the nucleus matcher (authorization/WildcardTrie.java) in one of
  two lookup styles, chosen by the IPC service:
  - STANDARD (``aws.greengrass.ipc.pubsub``, PubSubIPCEventStreamAgent): only ``*`` is a wildcard
    (any characters, ``/`` included); ``+`` and ``#`` are plain characters.
  - MQTT_STYLE (``aws.greengrass.ipc.mqttproxy``, MqttProxyIPCAgent): ``*`` as above, and ``+``
    and ``#`` act as MQTT wildcards where they are used validly (whole level; ``#`` last),
    otherwise they are plain characters.
  In both, ``${c}`` escapes a character (``${*}``, ``${+}``, ``${#}``, ``${$}``). A resource is
  compared with the requested topic string itself, so a local subscription to ``a/+`` needs a
  resource that matches the text ``a/+`` (``a/+`` literally, ``a/*`` or ``*``).
"""

from __future__ import annotations

import re
from functools import lru_cache


class TopicError(ValueError):
    """A topic name or filter that is not valid MQTT."""


def validate_topic_name(topic: object) -> str:
    """A topic to publish to: non-empty text without wildcards."""
    if not isinstance(topic, str) or not topic:
        raise TopicError("topic must be a non-empty string")
    if "+" in topic or "#" in topic:
        raise TopicError(f"publish topic must not contain a wildcard: {topic!r}")
    if "\x00" in topic:
        raise TopicError("topic must not contain NUL")
    return topic


def validate_topic_filter(topic_filter: object) -> str:
    """A topic filter to subscribe with: ``+`` only as a whole level, ``#`` only as the last."""
    if not isinstance(topic_filter, str) or not topic_filter:
        raise TopicError("topic filter must be a non-empty string")
    if "\x00" in topic_filter:
        raise TopicError("topic filter must not contain NUL")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise TopicError(f"'#' must be the whole last level: {topic_filter!r}")
        if "+" in level and level != "+":
            raise TopicError(f"'+' must be a whole level: {topic_filter!r}")
    return topic_filter


def has_wildcard(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when ``topic`` (a concrete name) matches the MQTT ``topic_filter``."""
    if topic_filter == topic:
        return True
    if not has_wildcard(topic_filter):
        return False
    flevels = topic_filter.split("/")
    tlevels = topic.split("/")
    if topic.startswith("$") and flevels[0] in ("+", "#"):
        return False
    for i, flevel in enumerate(flevels):
        if flevel == "#":
            return True
        if i >= len(tlevels):
            return False
        if flevel != "+" and flevel != tlevels[i]:
            return False
    return len(flevels) == len(tlevels)


STANDARD = "STANDARD"
MQTT_STYLE = "MQTT_STYLE"


@lru_cache(maxsize=4096)
def _compile_resource(pattern: str, style: str) -> re.Pattern[str]:
    mqtt = style == MQTT_STYLE
    parts: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "$" and i + 3 < n and pattern[i + 1] == "{" and pattern[i + 3] == "}":
            parts.append(re.escape(pattern[i + 2]))
            i += 4
            continue
        at_level_start = i == 0 or pattern[i - 1] == "/"
        at_level_end = i == n - 1 or pattern[i + 1] == "/"
        if ch == "*":
            parts.append(".*")
        elif mqtt and ch == "#" and i == n - 1 and at_level_start:
            if i == 0:
                parts.append(".*")
            else:  # "a/#" also matches "a"
                parts[-1] = parts[-1][:-1] if parts[-1] == "/" else parts[-1]
                parts.append("(?:/.*)?")
        elif mqtt and ch == "+" and at_level_start and at_level_end:
            parts.append("[^/]*")
        else:
            parts.append("/" if ch == "/" else re.escape(ch))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def resource_matches(pattern: str, resource: str, style: str = MQTT_STYLE) -> bool:
    """True when a Greengrass ``accessControl`` resource pattern allows ``resource``."""
    if style not in (STANDARD, MQTT_STYLE):
        raise ValueError(f"unknown resource lookup style {style!r}")
    if pattern == "*" or pattern == resource:
        return True
    return _compile_resource(pattern, style).fullmatch(resource) is not None
