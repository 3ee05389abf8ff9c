"""Thin edge over the real Greengrass IPC client (awsiotsdk GreengrassCoreIPCClientV2).

Components talk JSON over local pub/sub. This module keeps the SDK's types out of component code
and turns a lost nucleus connection into a visible event, so a service can exit non-zero and be
restarted by the nucleus instead of silently waiting forever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence

from shared.component import StartError

log = logging.getLogger(__name__)

JsonHandler = Callable[[Any, str], None]


class IpcClient:
    """One IPC connection for one component process."""

    def __init__(self, timeout: float = 10.0) -> None:
        # Imported lazily so pure modules (and their tests) do not need awscrt.
        import awsiot.greengrasscoreipc as gg
        from awsiot.eventstreamrpc import LifecycleHandler
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

        self.disconnected = threading.Event()
        self._closing = False
        outer = self

        class _Lifecycle(LifecycleHandler):
            def on_disconnect(self, reason: Optional[Exception]) -> None:
                if not outer._closing:
                    log.error("IPC connection to the nucleus lost: %s", reason)
                outer.disconnected.set()

        raw = gg.connect(lifecycle_handler=_Lifecycle(), timeout=timeout)
        self._client = GreengrassCoreIPCClientV2(client=raw)
        self._operations: List[Any] = []

    # -- local pub/sub -------------------------------------------------------------------------
    def publish_json(self, topic: str, message: Any) -> None:
        from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

        self._client.publish_to_topic(
            topic=topic, publish_message=PublishMessage(json_message=JsonMessage(message=message))
        )

    def subscribe_json(self, topic: str, handler: JsonHandler) -> None:
        """Call handler(message, topic) for each JSON (or UTF-8 JSON binary) message on topic;
        StartError if the nucleus refuses the subscription."""
        from awsiot.greengrasscoreipc.model import SubscriptionResponseMessage

        def on_event(event: SubscriptionResponseMessage) -> None:
            try:
                if event.json_message is not None:
                    payload = event.json_message.message
                    ctx = event.json_message.context
                    source = ctx.topic if ctx else topic
                elif event.binary_message is not None:
                    payload = json.loads(event.binary_message.message.decode("utf-8"))
                    ctx = event.binary_message.context
                    source = ctx.topic if ctx else topic
                else:
                    return
                handler(payload, source)
            except Exception:  # one bad message must not kill the subscription
                log.exception("handler failed for a message on %s", topic)

        def on_error(error: Exception) -> bool:
            log.error("subscription to %s failed: %s", topic, error)
            return False

        try:
            _, operation = self._client.subscribe_to_topic(
                topic=topic, on_stream_event=on_event, on_stream_error=on_error
            )
        except Exception as exc:
            raise StartError(f"cannot subscribe to {topic} ({type(exc).__name__}: {exc}); does "
                             "the deployment's accessControl allow it?") from exc
        self._operations.append(operation)

    # -- IoT Core --------------------------------------------------------------------------------
    def publish_iot_core(self, topic: str, message: Any, qos: int = 1) -> None:
        payload = message if isinstance(message, bytes) else json.dumps(
            message, separators=(",", ":")
        ).encode("utf-8")
        self._client.publish_to_iot_core(topic_name=topic, qos=str(int(qos)), payload=payload)

    # -- configuration ---------------------------------------------------------------------------
    def get_configuration(self, key_path: Sequence[str] = ()) -> Dict[str, Any]:
        response = self._client.get_configuration(key_path=list(key_path))
        value = response.value
        return value if isinstance(value, dict) else {}

    def on_configuration_update(self, callback: Callable[[List[str]], None]) -> None:
        """Call callback(key_path) whenever this component's configuration changes."""

        def on_event(event: Any) -> None:
            try:
                callback(list(event.configuration_update_event.key_path or []))
            except Exception:
                log.exception("configuration update handler failed")

        _, operation = self._client.subscribe_to_configuration_update(
            key_path=[], on_stream_event=on_event
        )
        self._operations.append(operation)

    # -- lifecycle -------------------------------------------------------------------------------
    def report_running(self) -> None:
        self._client.update_state(state="RUNNING")

    def report_errored(self) -> None:
        self._client.update_state(state="ERRORED")

    def announce_ready(self, topic: str, component: str, consumes: str) -> bool:
        """Tell producers that this consumer now receives `consumes` (messages.ConsumerReady),
        so they re-send what is in flight at once. "" turns it off; a refusal is logged, and the
        producers' result timeout remains the last resort. Returns whether it was sent."""
        if not topic:
            return False
        from shared.messages import ConsumerReady

        message = ConsumerReady(component=component, consumes=consumes,
                                instance=uuid.uuid4().hex)
        try:
            self.publish_json(topic, message.to_dict())
        except Exception as exc:
            log.warning("cannot announce readiness on %s (%s: %s); producers will re-send only "
                        "after their timeout", topic, type(exc).__name__, exc)
            return False
        return True

    def close(self) -> None:
        """Close subscriptions and the connection; never raises, since a component closes on its
        way out, often because the nucleus connection is already gone."""
        self._closing = True
        for operation in self._operations:
            with contextlib.suppress(Exception):  # already closed by the server side
                operation.close()
        try:
            self._client.close()
        except Exception as exc:
            log.debug("closing the IPC connection: %s", exc)
