"""Greengrass IPC server: event-stream RPC over a Unix socket, for the unmodified SDK client.

The protocol (awslabs/aws-c-event-stream RPC, as the awscrt client speaks it):

* Every frame carries ``:message-type``, ``:message-flags`` and ``:stream-id`` (int32 headers).
* The client opens with CONNECT on stream 0 (``:version`` "0.1.0", payload
  ``{"authToken": SVCUID}``). We answer CONNECT_ACK with the CONNECTION_ACCEPTED flag, or
  without it to refuse (the SDK then raises ``AccessDeniedError``) and hang up.
* PING is answered with PING_RESPONSE.
* An operation is an APPLICATION_MESSAGE on a new stream id with an ``operation`` header
  (``aws.greengrass#PublishToTopic``), ``:content-type: application/json`` and
  ``service-model-type``. The first message back is the response (or an APPLICATION_ERROR whose
  ``service-model-type`` names the SDK error class, e.g. ``aws.greengrass#UnauthorizedError``);
  later ones on the same stream are stream events. TERMINATE_STREAM ends a stream from either
  side: unary responses carry it, subscriptions stay open until the client sends it.

The server runs its own asyncio loop on a background thread; the public methods of
``IpcServer`` are safe to call from any thread.

Emulated: SVCUID authentication (one token per component, a re-registered component's old
token stops working); PublishToTopic / SubscribeToTopic (JSON and binary, ``+``/``#`` filters,
receiveMode); PublishToIoTCore (appended to a JSON-lines "cloud" log, IoT Core topic and 128 KB
payload limits checked) / SubscribeToIoTCore (sees what local components publish to IoT Core);
GetConfiguration / UpdateConfiguration / SubscribeToConfigurationUpdate; UpdateState;
``accessControl`` authorization for the pubsub and mqttproxy services (UnauthorizedError).
Not emulated: every other operation answers ServiceError ("not emulated"); nothing arrives
from a real cloud; QoS, retain and MQTT 5 properties are recorded or passed through, not
enforced; configuration operations need no authorization (as on the nucleus).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from localgg import authz
from localgg.authz import Authorizer
from localgg.config_store import ConfigError, ConfigNotFoundError, ConfigStore
from localgg.eventstream import (
    APPLICATION_ERROR,
    APPLICATION_MESSAGE,
    CONNECT,
    CONNECT_ACK,
    CONNECTION_ACCEPTED,
    INTERNAL_ERROR,
    PING,
    PING_RESPONSE,
    PROTOCOL_ERROR,
    PROTOCOL_VERSION,
    TERMINATE_STREAM,
    EventStreamError,
    FrameDecoder,
    HeaderType,
    Message,
    frame,
    rpc_headers,
)
from localgg.topics import (
    TopicError,
    has_wildcard,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)

log = logging.getLogger("localgg.ipc")

SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"
SVCUID_ENV = "SVCUID"
GG = "aws.greengrass#"
UNAUTHORIZED = GG + "UnauthorizedError"
SERVICE_ERROR = GG + "ServiceError"
NOT_FOUND = GG + "ResourceNotFoundError"
INVALID_ARGUMENTS = GG + "InvalidArgumentsError"

#: Operations of the Greengrass IPC model that this runtime does not emulate: answered with
#: ServiceError so a component sees a clear SDK exception rather than a hang.
GREENGRASS_OPERATIONS = frozenset(
    GG + name for name in (
        "AuthorizeClientDeviceAction CancelLocalDeployment CreateDebugPassword "
        "CreateLocalDeployment DeferComponentUpdate DeleteThingShadow GetClientDeviceAuthToken "
        "GetComponentDetails GetConfiguration GetLocalDeploymentStatus GetSecretValue "
        "GetThingShadow ListComponents ListLocalDeployments ListNamedShadowsForThing "
        "PauseComponent PublishToIoTCore PublishToTopic PutComponentMetric RestartComponent "
        "ResumeComponent SendConfigurationValidityReport StopComponent "
        "SubscribeToCertificateUpdates SubscribeToComponentUpdates SubscribeToConfigurationUpdate "
        "SubscribeToIoTCore SubscribeToIoTCoreConnectionStatus SubscribeToTopic "
        "SubscribeToValidateConfigurationUpdates UpdateConfiguration UpdateState "
        "UpdateThingShadow ValidateAuthorizationToken VerifyClientDeviceIdentity").split())

REFUSED_GRACE_S = 5.0
MAX_BACKLOG_BYTES = 64 * 1024 * 1024
IOT_CORE_MAX_PAYLOAD = 128 * 1024
IOT_CORE_MAX_TOPIC_BYTES = 256
IOT_CORE_MAX_SLASHES = 7

def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _event_payload(topic: str, kind: str, request: dict[str, Any], raw_request: bytes) -> bytes:
    """SubscriptionResponseMessage JSON for a PublishToTopic request.

    When the request is exactly what the SDK writes (``json.dumps`` of topic + one message),
    the message's JSON text is reused byte for byte instead of being re-encoded: the request
    already parsed as JSON, its keys are known, and the text around the message is matched
    literally, so the slice is exactly the message value. Anything else is re-encoded.
    """
    body = request["publishMessage"][kind]
    topic_json = json.dumps(topic).encode()
    if len(request) == 2 and len(body) == 1 and "message" in body:
        prefix = b'{"topic": ' + topic_json + b', "publishMessage": {"' + kind.encode() + \
            b'": {"message": '
        if raw_request.startswith(prefix) and raw_request.endswith(b"}}}"):
            return b"".join((b'{"', kind.encode(), b'":{"message":',
                             raw_request[len(prefix):-3], b',"context":{"topic":', topic_json,
                             b"}}}"))
    return _dumps({kind: {"message": body.get("message"), "context": {"topic": topic}}})


class IpcError(Exception):
    """An operation failure, sent back as APPLICATION_ERROR of the given SDK error shape."""

    def __init__(self, model: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.model = model
        self.payload = {"message": message, **fields}


@dataclass
class _Component:
    name: str
    svcuid: str
    authorizer: Authorizer
    state: str | None = None


@dataclass(eq=False)
class _Subscription:
    """An open subscription stream: where to send, and pre-encoded event headers."""

    conn: _Connection
    stream_id: int
    component: str
    topic_filter: str
    event_headers: bytes
    from_others_only: bool = False
    on_close: Callable[[], None] | None = None


@dataclass
class _Router:
    """Topic filter -> subscriptions, with a per-topic cache of matches."""

    exact: dict[str, list[_Subscription]] = field(default_factory=dict)
    wildcard: list[_Subscription] = field(default_factory=list)
    cache: dict[str, tuple[_Subscription, ...]] = field(default_factory=dict)

    def add(self, sub: _Subscription) -> None:
        if "+" in sub.topic_filter or "#" in sub.topic_filter:
            self.wildcard.append(sub)
        else:
            self.exact.setdefault(sub.topic_filter, []).append(sub)
        self.cache.clear()

    def remove(self, sub: _Subscription) -> None:
        subs = self.exact.get(sub.topic_filter)
        if subs and sub in subs:
            subs.remove(sub)
            if not subs:
                del self.exact[sub.topic_filter]
        elif sub in self.wildcard:
            self.wildcard.remove(sub)
        self.cache.clear()

    def match(self, topic: str) -> tuple[_Subscription, ...]:
        found = self.cache.get(topic)
        if found is None:
            found = tuple(self.exact.get(topic, ())) + tuple(
                s for s in self.wildcard if topic_matches(s.topic_filter, topic))
            if len(self.cache) > 10000:
                self.cache.clear()
            self.cache[topic] = found
        return found


class _Connection(asyncio.Protocol):
    """One client connection: frame decoding, handshake, stream bookkeeping, batched writes."""

    def __init__(self, server: IpcServer) -> None:
        self.server = server
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.component: str | None = None
        self.streams: dict[int, _Subscription] = {}
        self.last_stream_id = 0
        self.closed = False
        self.refused = False
        self.dropped = 0
        self._out: list[bytes] = []
        self._flush_scheduled = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server._connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except EventStreamError as exc:
            log.warning("closing connection of %s: %s", self.component or "?", exc)
            self._connection_error(PROTOCOL_ERROR, str(exc))
            return
        for message in messages:
            if self.closed:
                return
            try:
                self._on_message(message)
            except Exception:  # a bug here must not take the whole server down
                log.exception("internal error handling a message from %s", self.component)
                self._connection_error(INTERNAL_ERROR, "internal error in the local runtime")
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server._connections.discard(self)
        for sub in list(self.streams.values()):
            self.server._close_subscription(sub)
        self.streams.clear()

    # -- writing -------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue a frame; all frames queued in one loop iteration go out in one write."""
        if self.closed:
            return
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.server._loop.call_soon(self._flush)

    def congested(self) -> bool:
        """True while a client has stopped reading and too much is queued for it.

        Events for it are then dropped (and logged) rather than buffered without limit, the
        way a broker protects itself from a stalled subscriber; responses are never dropped.
        """
        transport = self.transport
        if transport is None or transport.get_write_buffer_size() < self.server.max_backlog_bytes:
            if self.dropped:
                log.warning("%s is reading again after %d dropped events", self.component,
                            self.dropped)
                self.dropped = 0
            return False
        if not self.dropped:
            log.warning("%s is not reading its IPC socket; dropping events", self.component)
        self.dropped += 1
        return True

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self.closed:
            out, self._out = self._out, []
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close(self) -> None:
        if self.closed:
            return
        self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _connection_error(self, message_type: int, text: str) -> None:
        self.send(frame(rpc_headers(message_type, 0, 0, "aws#Error"), _dumps({"message": text})))
        self.close()

    # -- protocol ------------------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        mtype = flags = sid = None
        operation = None
        for h in message.headers:
            name = h.name.lower()
            if h.type == HeaderType.INT32:
                if name == ":message-type":
                    mtype = h.value
                elif name == ":message-flags":
                    flags = h.value
                elif name == ":stream-id":
                    sid = h.value
            elif name == "operation" and h.type == HeaderType.STRING:
                operation = h.value
        if mtype is None or flags is None or sid is None:
            self._connection_error(PROTOCOL_ERROR, "missing :message-type, :message-flags or "
                                                   ":stream-id")
            return
        if self.refused:
            return
        if self.component is None:
            if mtype != CONNECT or sid != 0:
                self._connection_error(PROTOCOL_ERROR, "CONNECT must be the first message")
            else:
                self._on_connect(message)
            return
        if sid == 0:
            if mtype == PING:
                self.send(frame(rpc_headers(PING_RESPONSE, 0, 0), message.payload))
            elif mtype == PING_RESPONSE:
                pass
            else:
                self._connection_error(PROTOCOL_ERROR, f"message type {mtype} not allowed on "
                                                       "stream 0 after CONNECT")
            return
        if mtype not in (APPLICATION_MESSAGE, APPLICATION_ERROR):
            self._connection_error(PROTOCOL_ERROR, "only application messages may use a stream")
            return
        sub = self.streams.get(sid)
        if sub is not None:
            if flags & TERMINATE_STREAM:
                del self.streams[sid]
                self.server._close_subscription(sub)
            return
        if sid <= self.last_stream_id:
            return  # a late message for a stream we already finished
        self.last_stream_id = sid
        if flags & TERMINATE_STREAM:
            return
        self.server._dispatch(self, sid, operation, message.payload)

    def _on_connect(self, message: Message) -> None:
        version = message.header_values().get(":version")
        component = None
        if version == PROTOCOL_VERSION:
            try:
                token = json.loads(message.payload or b"{}").get("authToken")
            except (ValueError, AttributeError):
                token = None
            component = self.server._component_for_token(token)
        if component is None:
            log.warning("refused IPC connection: %s", "bad :version header"
                        if version != PROTOCOL_VERSION else "unknown SVCUID")
            self.send(frame(rpc_headers(CONNECT_ACK, 0, 0), b""))
            # The client hangs up itself on a refused CONNECT_ACK and then reports
            # AccessDeniedError; hanging up first would make it report a socket error instead.
            self.refused = True
            self.server._loop.call_later(REFUSED_GRACE_S, self.close)
            return
        self.component = component
        self.send(frame(rpc_headers(CONNECT_ACK, CONNECTION_ACCEPTED, 0), b""))

    # -- responses -----------------------------------------------------------------------

    def respond(self, sid: int, model: str, payload: bytes, terminate: bool = True) -> None:
        flags = TERMINATE_STREAM if terminate else 0
        self.send(frame(rpc_headers(APPLICATION_MESSAGE, flags, sid, model), payload))

    def fail(self, sid: int, error: IpcError) -> None:
        self.send(frame(rpc_headers(APPLICATION_ERROR, TERMINATE_STREAM, sid, error.model),
                        _dumps(error.payload)))


class IpcServer:
    """Local stand-in for the nucleus IPC service. See the module docstring for the protocol."""

    def __init__(self, socket_path: Path, cloud_log: Path, thing_name: str = "local-thing") -> None:
        self._socket_path = Path(socket_path)
        if len(os.fsencode(str(self._socket_path.absolute()))) > 107:
            raise ValueError(f"Unix socket path too long (max 107 bytes): {self._socket_path}")
        self._cloud_log_path = Path(cloud_log)
        self.thing_name = thing_name
        #: events for a client with more than this many unsent bytes are dropped
        self.max_backlog_bytes = MAX_BACKLOG_BYTES
        self._lock = threading.Lock()
        self._components: dict[str, _Component] = {}
        self._tokens: dict[str, str] = {}
        self._config = ConfigStore()
        self._local = _Router()
        self._iot = _Router()
        self._connections: set[_Connection] = set()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._aserver: asyncio.AbstractServer | None = None
        self._cloud_log: Any = None
        #: called with (component, state) for each UpdateState; the lifecycle decides what it means
        self.on_update_state: Callable[[str, str], object] | None = None
        self._handlers: dict[str, Callable[[_Connection, int, dict[str, Any]], None]] = {
            GG + "PublishToTopic": self._publish_to_topic,
            GG + "SubscribeToTopic": self._subscribe_to_topic,
            GG + "PublishToIoTCore": self._publish_to_iot_core,
            GG + "SubscribeToIoTCore": self._subscribe_to_iot_core,
            GG + "GetConfiguration": self._get_configuration,
            GG + "UpdateConfiguration": self._update_configuration,
            GG + "SubscribeToConfigurationUpdate": self._subscribe_to_configuration_update,
            GG + "UpdateState": self._update_state,
        }

    # -- public API (any thread) ---------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        return self._socket_path

    @property
    def cloud_log(self) -> Path:
        return self._cloud_log_path

    def add_component(self, name: str, configuration: dict, access_control: dict | None) -> str:
        """Register a component; returns its fresh SVCUID (any earlier one stops working)."""
        authorizer = Authorizer(access_control)  # raises PolicyError on a malformed mapping
        svcuid = secrets.token_hex(16)
        self._config.add_component(name, configuration)
        with self._lock:
            old = self._components.get(name)
            if old is not None:
                self._tokens.pop(old.svcuid, None)
            self._components[name] = _Component(name, svcuid, authorizer)
            self._tokens[svcuid] = name
        return svcuid

    def set_component(self, name: str, configuration: dict, access_control: dict | None) -> None:
        """A deployment changed a registered component: new configuration (its subscribers are
        told what changed) and new authorization; its SVCUID stays, as the service does."""
        authorizer = Authorizer(access_control)
        with self._lock:
            self._components[name].authorizer = authorizer
        self._config.replace(name, configuration)

    def ipc_env(self, name: str) -> dict[str, str]:
        """Environment variables a process needs to act as ``name`` over IPC."""
        with self._lock:
            svcuid = self._components[name].svcuid
        return {SOCKET_ENV: str(self._socket_path.absolute()), SVCUID_ENV: svcuid,
                "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH": str(self._socket_path.absolute()),
                "AWS_IOT_THING_NAME": self.thing_name}

    def is_component_token(self, token: str) -> bool:
        """Whether `token` is some component's SVCUID (what Stream Manager accepts)."""
        with self._lock:
            return any(hmac.compare_digest(token.encode(), known.encode())
                       for known in self._tokens)

    def component_state(self, name: str) -> str | None:
        """The last state the component reported with UpdateState (RUNNING / ERRORED)."""
        with self._lock:
            component = self._components.get(name)
            return component.state if component else None

    def get_configuration(self, name: str) -> dict:
        return self._config.get(name)

    def update_configuration(self, name: str, key_path: list[str], value_to_merge: Any) -> None:
        """Merge into a component's configuration and notify its configuration subscribers."""
        self._config.update(name, key_path, value_to_merge)

    def publish_from_cloud(self, topic: str, payload: bytes, timeout: float = 5.0) -> int:
        """Deliver an MQTT message "from IoT Core" to SubscribeToIoTCore subscribers.

        Stands in for the cloud side (a remote command, a shadow delta); returns how many
        subscriptions received it. Not written to the cloud log, which records device output.
        """
        validate_topic_name(topic)
        encoded = base64.b64encode(payload).decode()
        body = _dumps({"message": {"topicName": topic, "payload": encoded}})

        async def deliver() -> int:
            return self._deliver(self._iot.match(topic), "", body)

        return asyncio.run_coroutine_threadsafe(deliver(), self._loop).result(timeout)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("IPC server already started")
        self._socket_path.parent.mkdir(parents=True, exist_ok=True)
        if self._socket_path.exists() or self._socket_path.is_symlink():
            self._socket_path.unlink()
        self._cloud_log_path.parent.mkdir(parents=True, exist_ok=True)
        self._cloud_log = open(self._cloud_log_path, "a", encoding="utf-8")  # noqa: SIM115
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._aserver = self._loop.run_until_complete(self._loop.create_unix_server(
                    lambda: _Connection(self), path=str(self._socket_path)))
                # Everyone may connect, as on the nucleus (Permissions.setIpcSocketPermission);
                # the SVCUID is what authenticates.
                os.chmod(self._socket_path, 0o666)
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="localgg-ipc", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._cloud_log.close()
            raise failure[0]

    def stop(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            return

        async def shutdown() -> None:
            if self._aserver is not None:
                self._aserver.close()
            for conn in list(self._connections):
                conn.close()
            await asyncio.sleep(0)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        thread.join(timeout=10)
        if self._cloud_log is not None:
            self._cloud_log.close()
        try:
            self._socket_path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> IpcServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- loop-thread internals -----------------------------------------------------------

    def _component_for_token(self, token: object) -> str | None:
        if not isinstance(token, str):
            return None
        with self._lock:
            return self._tokens.get(token)

    def _authorizer(self, name: str) -> Authorizer:
        with self._lock:
            return self._components[name].authorizer

    def _dispatch(self, conn: _Connection, sid: int, operation: str | None,
                  payload: bytes) -> None:
        handler = self._handlers.get(operation or "")
        try:
            if handler is None:
                if operation in GREENGRASS_OPERATIONS:
                    raise IpcError(SERVICE_ERROR, f"{operation} is not emulated by the local "
                                                  "Greengrass runtime")
                conn.send(frame(rpc_headers(APPLICATION_ERROR, TERMINATE_STREAM, sid,
                                            "aws#UnsupportedOperation"),
                                _dumps({"message": f"UnsupportedOperation: {operation}"})))
                return
            try:
                request = json.loads(payload) if payload else {}
            except ValueError as exc:
                raise IpcError(SERVICE_ERROR, f"request is not valid JSON: {exc}") from None
            if not isinstance(request, dict):
                raise IpcError(INVALID_ARGUMENTS, "request must be a JSON object")
            if handler == self._publish_to_topic:
                self._publish_to_topic(conn, sid, request, payload)
            else:
                handler(conn, sid, request)
        except IpcError as exc:
            conn.fail(sid, exc)
        except Exception as exc:  # keep serving; the client gets a ServiceError, not a hang
            log.exception("%s failed for %s", operation, conn.component)
            conn.fail(sid, IpcError(SERVICE_ERROR, f"internal error: {exc}"))

    def _authorize(self, component: str, service: str, operation: str, resource: str) -> None:
        authorizer = self._authorizer(component)
        if not authorizer.is_allowed(service, operation, resource):
            raise IpcError(UNAUTHORIZED,
                           authorizer.describe_denial(component, service, operation, resource))

    def _open_subscription(self, conn: _Connection, sid: int, topic_filter: str,
                           event_model: str, router: _Router | None,
                           from_others_only: bool = False) -> _Subscription:
        sub = _Subscription(conn, sid, conn.component or "", topic_filter,
                            rpc_headers(APPLICATION_MESSAGE, 0, sid, event_model),
                            from_others_only)
        conn.streams[sid] = sub
        if router is not None:
            router.add(sub)
            sub.on_close = lambda: router.remove(sub)
        return sub

    def _close_subscription(self, sub: _Subscription) -> None:
        if sub.on_close is not None:
            sub.on_close()
            sub.on_close = None

    @staticmethod
    def _deliver(subs: tuple[_Subscription, ...], publisher: str, payload: bytes) -> int:
        delivered = 0
        for sub in subs:
            if sub.from_others_only and sub.component == publisher:
                continue
            if sub.conn.congested():
                continue
            sub.conn.send(frame(sub.event_headers, payload))
            delivered += 1
        return delivered

    # -- operations ----------------------------------------------------------------------

    def _publish_to_topic(self, conn: _Connection, sid: int, req: dict[str, Any],
                          payload: bytes = b"") -> None:
        topic = req.get("topic")
        try:
            validate_topic_name(topic)
        except TopicError as exc:
            raise IpcError(INVALID_ARGUMENTS, str(exc)) from None
        if "*" in topic:  # the nucleus refuses '*' in local publish topics too
            raise IpcError(INVALID_ARGUMENTS, "Publish topic must not contain a wildcard.")
        component = conn.component or ""
        self._authorize(component, authz.PUBSUB_SERVICE, authz.PUBLISH_TO_TOPIC, topic)
        message = req.get("publishMessage")
        if not isinstance(message, dict) or len(message) != 1 or not (
                "jsonMessage" in message or "binaryMessage" in message):
            raise IpcError(INVALID_ARGUMENTS, "publishMessage must hold exactly one of "
                                              "jsonMessage or binaryMessage")
        kind, body = next(iter(message.items()))
        if not isinstance(body, dict):
            raise IpcError(INVALID_ARGUMENTS, f"{kind} must be an object")
        subs = self._local.match(topic)
        if subs:
            self._deliver(subs, component, _event_payload(topic, kind, req, payload))
        conn.respond(sid, GG + "PublishToTopicResponse", b"{}")

    def _subscribe_to_topic(self, conn: _Connection, sid: int, req: dict[str, Any]) -> None:
        topic = req.get("topic")
        try:
            validate_topic_filter(topic)
        except TopicError as exc:
            raise IpcError(INVALID_ARGUMENTS, str(exc)) from None
        # Nucleus default: a wildcard subscription does not hear its own component's messages
        mode = req.get("receiveMode") or (
            "RECEIVE_MESSAGES_FROM_OTHERS" if has_wildcard(topic) else "RECEIVE_ALL_MESSAGES")
        if mode not in ("RECEIVE_ALL_MESSAGES", "RECEIVE_MESSAGES_FROM_OTHERS"):
            raise IpcError(INVALID_ARGUMENTS, f"unknown receiveMode {mode!r}")
        self._authorize(conn.component or "", authz.PUBSUB_SERVICE, authz.SUBSCRIBE_TO_TOPIC,
                        topic)
        self._open_subscription(conn, sid, topic, GG + "SubscriptionResponseMessage",
                                self._local, mode == "RECEIVE_MESSAGES_FROM_OTHERS")
        conn.respond(sid, GG + "SubscribeToTopicResponse", b"{}", terminate=False)

    def _publish_to_iot_core(self, conn: _Connection, sid: int, req: dict[str, Any]) -> None:
        topic = req.get("topicName")
        try:
            validate_topic_name(topic)
        except TopicError as exc:
            raise IpcError(INVALID_ARGUMENTS, str(exc)) from None
        self._check_iot_topic(topic)
        qos = str(req.get("qos", ""))
        if qos not in ("0", "1"):
            raise IpcError(INVALID_ARGUMENTS, f"qos must be '0' or '1', got {req.get('qos')!r}")
        component = conn.component or ""
        self._authorize(component, authz.MQTT_PROXY_SERVICE, authz.PUBLISH_TO_IOT_CORE, topic)
        encoded = req.get("payload") or ""
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise IpcError(INVALID_ARGUMENTS, "payload is not valid base64") from None
        if len(raw) > IOT_CORE_MAX_PAYLOAD:
            raise IpcError(INVALID_ARGUMENTS,
                           f"payload of {len(raw)} bytes exceeds IoT Core's 128 KB limit")
        record: dict[str, Any] = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "component": component, "topic": topic, "qos": int(qos)}
        try:
            record["payload"] = json.loads(raw)
        except ValueError:
            record["payload"] = encoded
            record["payloadBase64"] = True
        self._cloud_log.write(json.dumps(record) + "\n")
        self._cloud_log.flush()
        subs = self._iot.match(topic)
        if subs:
            message = {"topicName": topic, "payload": encoded}
            for key in ("retain", "userProperties", "messageExpiryIntervalSeconds",
                        "correlationData", "responseTopic", "payloadFormat", "contentType"):
                if key in req:
                    message[key] = req[key]
            self._deliver(subs, component, _dumps({"message": message}))
        conn.respond(sid, GG + "PublishToIoTCoreResponse", b"{}")

    @staticmethod
    def _check_iot_topic(topic: str) -> None:
        if len(topic.encode()) > IOT_CORE_MAX_TOPIC_BYTES:
            raise IpcError(INVALID_ARGUMENTS, "IoT Core topics are limited to 256 bytes")
        body = topic.split("/", 3)[-1] if topic.startswith("$aws/rules/") else topic
        if body.count("/") > IOT_CORE_MAX_SLASHES:
            raise IpcError(INVALID_ARGUMENTS, "IoT Core topics allow at most 7 '/' separators")

    def _subscribe_to_iot_core(self, conn: _Connection, sid: int, req: dict[str, Any]) -> None:
        topic = req.get("topicName")
        try:
            validate_topic_filter(topic)
        except TopicError as exc:
            raise IpcError(INVALID_ARGUMENTS, str(exc)) from None
        if str(req.get("qos", "")) not in ("0", "1"):
            raise IpcError(INVALID_ARGUMENTS, f"qos must be '0' or '1', got {req.get('qos')!r}")
        self._authorize(conn.component or "", authz.MQTT_PROXY_SERVICE,
                        authz.SUBSCRIBE_TO_IOT_CORE, topic)
        self._open_subscription(conn, sid, topic, GG + "IoTCoreMessage", self._iot)
        conn.respond(sid, GG + "SubscribeToIoTCoreResponse", b"{}", terminate=False)

    def _target_component(self, conn: _Connection, req: dict[str, Any]) -> str:
        name = req.get("componentName") or conn.component or ""
        if not isinstance(name, str) or not self._config.has_component(name):
            raise IpcError(NOT_FOUND, f"component {name} not found",
                           resourceType="Component", resourceName=str(name))
        return name

    def _get_configuration(self, conn: _Connection, sid: int, req: dict[str, Any]) -> None:
        name = self._target_component(conn, req)
        key_path = req.get("keyPath") or []
        try:
            value = self._config.get(name, key_path)
        except ConfigError as exc:
            raise IpcError(INVALID_ARGUMENTS, str(exc)) from None
        except ConfigNotFoundError as exc:
            raise IpcError(NOT_FOUND, str(exc), resourceType="Configuration",
                           resourceName="/".join(map(str, key_path))) from None
        if not isinstance(value, dict):  # a leaf comes back as {leafName: value}, like the nucleus
            value = {key_path[-1]: value}
        conn.respond(sid, GG + "GetConfigurationResponse",
                     _dumps({"componentName": name, "value": value}))

    def _update_configuration(self, conn: _Connection, sid: int, req: dict[str, Any]) -> None:
        # The request names no component: a component can only ever update its own.
        timestamp = req.get("timestamp")
        if timestamp is None:
            raise IpcError(INVALID_ARGUMENTS, "Timestamp is required")
        if not isinstance(timestamp, (int, float)):
            raise IpcError(INVALID_ARGUMENTS, "timestamp must be a number (epoch seconds)")
        value = req.get("valueToMerge")
        if not isinstance(value, dict):
            raise IpcError(INVALID_ARGUMENTS, "ValueToMerge is required and must be an object")
        key_path = req.get("keyPath") or []
        if not isinstance(key_path, list):
            raise IpcError(INVALID_ARGUMENTS, "keyPath must be a list of strings")
        if (key_path[:1] == ["accessControl"]) or (not key_path and "accessControl" in value):
            raise IpcError(INVALID_ARGUMENTS,
                           "Config update is not allowed for following fields [accessControl]")
        try:
            _, stale = self._config.update_checked(conn.component or "", key_path, value,
                                                   timestamp)
        except ConfigError as exc:
            raise IpcError(INVALID_ARGUMENTS, str(exc)) from None
        if stale:
            raise IpcError(GG + "FailedUpdateConditionCheckError", "Proposed timestamp is older "
                           "than the config's latest modified timestamp")
        conn.respond(sid, GG + "UpdateConfigurationResponse", b"{}")

    def _subscribe_to_configuration_update(self, conn: _Connection, sid: int,
                                           req: dict[str, Any]) -> None:
        name = self._target_component(conn, req)
        key_path = req.get("keyPath") or []
        try:  # like the nucleus, only an existing node can be watched
            self._config.get(name, key_path)
        except ConfigError as exc:
            raise IpcError(INVALID_ARGUMENTS, str(exc)) from None
        except ConfigNotFoundError as exc:
            raise IpcError(NOT_FOUND, str(exc), resourceType="Configuration",
                           resourceName="/".join(map(str, key_path))) from None
        sub = self._open_subscription(conn, sid, "", GG + "ConfigurationUpdateEvents", None)
        loop = self._loop

        def changed(component: str, path: list[str]) -> None:
            payload = _dumps({"configurationUpdateEvent": {"componentName": component,
                                                           "keyPath": path}})
            if threading.get_ident() == self._thread_ident():
                sub.conn.send(frame(sub.event_headers, payload))
            elif not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(sub.conn.send, frame(sub.event_headers, payload))
                except RuntimeError:  # the server stopped meanwhile
                    pass

        try:
            token = self._config.subscribe(name, key_path, changed)
        except ConfigError as exc:
            del conn.streams[sid]
            raise IpcError(INVALID_ARGUMENTS, str(exc)) from None
        sub.on_close = lambda: self._config.unsubscribe(token)
        conn.respond(sid, GG + "SubscribeToConfigurationUpdateResponse", b"{}", terminate=False)

    def _thread_ident(self) -> int | None:
        return self._thread.ident if self._thread else None

    def _update_state(self, conn: _Connection, sid: int, req: dict[str, Any]) -> None:
        state = req.get("state")
        if state not in ("RUNNING", "ERRORED"):
            raise IpcError(INVALID_ARGUMENTS, f"state must be RUNNING or ERRORED, got {state!r}")
        with self._lock:
            component = self._components.get(conn.component or "")
            if component is not None:
                component.state = state
        callback = self.on_update_state
        if callback is not None and conn.component:
            callback(conn.component, state)
        conn.respond(sid, GG + "UpdateStateResponse", b"{}")
