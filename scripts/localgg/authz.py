"""IPC authorization from a recipe's ``accessControl`` mapping, as the nucleus applies it.

``accessControl`` maps an IPC service (``aws.greengrass.ipc.pubsub``,
``aws.greengrass.ipc.mqttproxy``) to named policies, each with ``operations`` (for example
``aws.greengrass#PublishToTopic`` or ``*``) and ``resources`` (topic patterns, see
``topics.resource_matches``). A call is allowed when any policy of that service lists the
operation (or ``*``) and any of its resources matches the requested topic. No policy, no access.
Resources are matched with the lookup style the nucleus uses for that service: STANDARD for local
pub/sub (only ``*``), MQTT_STYLE for IoT Core (``+``, ``#`` and ``*``); see ``topics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from localgg.topics import MQTT_STYLE, STANDARD, resource_matches

PUBSUB_SERVICE = "aws.greengrass.ipc.pubsub"
MQTT_PROXY_SERVICE = "aws.greengrass.ipc.mqttproxy"

PUBLISH_TO_TOPIC = "aws.greengrass#PublishToTopic"
SUBSCRIBE_TO_TOPIC = "aws.greengrass#SubscribeToTopic"
PUBLISH_TO_IOT_CORE = "aws.greengrass#PublishToIoTCore"
SUBSCRIBE_TO_IOT_CORE = "aws.greengrass#SubscribeToIoTCore"
# PubSubIPCEventStreamAgent asks for STANDARD, MqttProxyIPCAgent for MQTT_STYLE.
LOOKUP_STYLE = {PUBSUB_SERVICE: STANDARD, MQTT_PROXY_SERVICE: MQTT_STYLE}


class PolicyError(ValueError):
    """An ``accessControl`` mapping that the nucleus would refuse to load."""


@dataclass(frozen=True)
class Policy:
    """One named policy of one IPC service."""

    policy_id: str
    operations: frozenset[str]
    resources: tuple[str, ...]

    def allows(self, operation: str, resource: str, style: str) -> bool:
        if operation not in self.operations and "*" not in self.operations:
            return False
        return any(resource_matches(pattern, resource, style) for pattern in self.resources)


def _string_list(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def parse_access_control(access_control: Mapping[str, object] | None) -> dict[str, list[Policy]]:
    """Validate and index an ``accessControl`` mapping by IPC service."""
    if access_control is None:
        return {}
    if not isinstance(access_control, Mapping):
        raise PolicyError(f"accessControl must be a mapping, got {type(access_control).__name__}")
    index: dict[str, list[Policy]] = {}
    for service, policies in access_control.items():
        if not isinstance(policies, Mapping):
            raise PolicyError(f"accessControl.{service} must map policy ids to policies")
        for policy_id, body in policies.items():
            where = f"accessControl.{service}.{policy_id}"
            if not isinstance(body, Mapping):
                raise PolicyError(f"{where} must be a mapping")
            operations = _string_list(body.get("operations"), f"{where}.operations")
            if not operations:
                raise PolicyError(f"{where}.operations must list at least one operation")
            resources = _string_list(body.get("resources"), f"{where}.resources")
            index.setdefault(str(service), []).append(
                Policy(str(policy_id), frozenset(operations), resources))
    return index


class Authorizer:
    """Answers "may this component call OPERATION on RESOURCE of SERVICE?"."""

    def __init__(self, access_control: Mapping[str, object] | None) -> None:
        self._policies = parse_access_control(access_control)
        self._cache: dict[tuple[str, str, str], bool] = {}

    def is_allowed(self, service: str, operation: str, resource: str) -> bool:
        key = (service, operation, resource)
        cached = self._cache.get(key)
        if cached is None:
            style = LOOKUP_STYLE.get(service, STANDARD)
            cached = any(p.allows(operation, resource, style)
                         for p in self._policies.get(service, ()))
            if len(self._cache) < 10000:
                self._cache[key] = cached
        return cached

    def describe_denial(self, component: str, service: str, operation: str, resource: str) -> str:
        """The nucleus's wording, so logs read the same locally and on a device."""
        return (f"Principal {component} is not authorized to perform {service}:{operation} "
                f"on resource {resource}")
