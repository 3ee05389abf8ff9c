"""Local Stream Manager: serves the `stream-manager` SDK's TCP protocol from its own thread.

One asyncio loop (in a background thread) owns the store, the exporters and the connections, so
no state is shared between threads. Requests on a connection are answered in order, except reads
that must wait for messages, which run as tasks so that a blocked read never holds up appends
sent on the same client. Offline mode: the flag file <root>/OFFLINE (polled every 0.2 s, or set
with set_online) pauses every export.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import logging
import os
import secrets
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream_manager.data import (
    ConnectResponse,
    Message,
    MessageStreamDefinition,
    MessageStreamInfo,
    Operation,
    ReadMessagesRequest,
    ResponseStatusCode,
    UnknownOperationError,
)
from stream_manager.utilinternal import UtilInternal

from .errors import InvalidRequest, NotEnoughMessages, RequestError, ResponseTooLarge
from .exporters import ExportManager, ExportTaskError, parse_s3_task
from .protocol import (
    CONNECT_VERSION,
    MAX_PACKET_SIZE,
    REQUESTS,
    SERVER_VERSION,
    SUPPORTED_PROTOCOL_VERSIONS,
    Frame,
    ProtocolError,
    decode_connect,
    decode_payload,
    encode_message,
    read_frame,
)
from .store import StreamStore
from .wakeups import ONLINE, Wakeups

log = logging.getLogger("localgg.stream_manager")

OFFLINE_FLAG = "OFFLINE"
OFFLINE_POLL_S = 0.2
READ_SOFT_LIMIT = 16 * 1024 * 1024  # a read returns fewer messages past this many bytes


class _Connection:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.tasks: set[asyncio.Task[None]] = set()
        self._drain = asyncio.Lock()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)  # one write per frame: frames never interleave
        async with self._drain:
            await self.writer.drain()

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.writer.close()


class StreamManagerServer:
    """Stream Manager stand-in; `with StreamManagerServer(root) as sm:` then point the SDK at
    sm.port with AWS_CONTAINER_AUTHORIZATION_TOKEN=sm.auth_token (see `env()`). Under the
    runtime, `accepts_token` instead accepts each component's SVCUID, as the real one does."""

    def __init__(
        self,
        root: Path,
        port: int = 0,
        auth_token: str | None = None,
        bucket_root: Path | None = None,
        kinesis_log: Path | None = None,
        host: str = "127.0.0.1",
        accepts_token: Callable[[str], bool] | None = None,
    ) -> None:
        self.root = Path(root)
        self.port = port
        self.host = host
        self.auth_token = auth_token or secrets.token_urlsafe(24)
        self._accepts_token = accepts_token
        self.bucket_root = Path(bucket_root) if bucket_root else self.root / "s3"
        self.kinesis_log = Path(kinesis_log) if kinesis_log else self.root / "kinesis.jsonl"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._lock_fd: int | None = None
        self._online = True
        self._connections: set[_Connection] = set()
        self._stopping: asyncio.Event | None = None

    # -- public API --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("server already started")
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise RuntimeError(f"another Stream Manager is using {self.root}") from None
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._thread_main, name="localgg-stream-manager",
                                        daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._thread = None
            self._release_lock()
            raise RuntimeError(f"Stream Manager failed to start: {self._error}") from self._error

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self._stopping.set)
        thread.join(timeout=30)
        if thread.is_alive():
            log.error("Stream Manager thread did not stop within 30 s")
        self._thread = None
        self._release_lock()

    def __enter__(self) -> StreamManagerServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_online(self, online: bool) -> None:
        """Switch exports on/off; same effect as removing/creating <root>/OFFLINE."""
        flag = self.root / OFFLINE_FLAG
        if online:
            with contextlib.suppress(FileNotFoundError):
                flag.unlink()
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            flag.touch()
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._refresh_online)

    def _token_ok(self, token: str) -> bool:
        if self._accepts_token is not None:
            return self._accepts_token(token)
        return hmac.compare_digest(token.encode(), self.auth_token.encode())

    @property
    def online(self) -> bool:
        return self._online

    def env(self) -> dict[str, str]:
        """Variables the SDK reads to reach this server."""
        return {
            "STREAM_MANAGER_SERVER_PORT": str(self.port),
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": self.auth_token,
        }

    # -- loop --------------------------------------------------------------------------------
    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            self._loop = None
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self.wakeups = Wakeups()
        self.store = StreamStore(self.root / "streams", on_change=self.wakeups.fire)
        try:
            self.store.load()
            self._online = not (self.root / OFFLINE_FLAG).exists()
            self.exports = ExportManager(self.store, self.wakeups, self.bucket_root,
                                         self.kinesis_log, lambda: self._online)
            self.exports.start()
            server = await asyncio.start_server(self._handle_connection, self.host, self.port)
            self.port = server.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._error = exc
            if hasattr(self, "exports"):
                await self.exports.stop()
            self.store.close()
            self._ready.set()
            return
        log.info("Stream Manager listening on %s:%d (root %s, %s)", self.host, self.port,
                 self.root, "online" if self._online else "offline")
        self._ready.set()
        poller = asyncio.get_running_loop().create_task(self._poll_offline())
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for conn in list(self._connections):
                conn.close()
            await server.wait_closed()
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
            await self.exports.stop()
            self.store.close()
            log.info("Stream Manager stopped")

    def _refresh_online(self) -> None:
        online = not (self.root / OFFLINE_FLAG).exists()
        if online != self._online:
            self._online = online
            log.info("Stream Manager is now %s", "online" if online else "offline")
            self.wakeups.fire(ONLINE)

    async def _poll_offline(self) -> None:
        while True:
            await asyncio.sleep(OFFLINE_POLL_S)
            self._refresh_online()

    # -- connections -------------------------------------------------------------------------
    async def _handle_connection(self, reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter) -> None:
        conn = _Connection(writer)
        self._connections.add(conn)
        try:
            if await self._handshake(reader, conn):
                while True:
                    frame = await read_frame(reader)
                    await self._dispatch(frame, conn)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except ProtocolError as exc:
            log.warning("dropping client: %s", exc)
        finally:
            conn.close()
            self._connections.discard(conn)

    async def _handshake(self, reader: asyncio.StreamReader, conn: _Connection) -> bool:
        version = (await reader.readexactly(1))[0]
        frame = await read_frame(reader)
        resp = ConnectResponse(
            status=ResponseStatusCode.Success,
            protocol_version=SUPPORTED_PROTOCOL_VERSIONS[0],
            supported_protocol_versions=list(SUPPORTED_PROTOCOL_VERSIONS),
            server_version=SERVER_VERSION,
        )
        try:
            if version != CONNECT_VERSION:
                raise _ConnectRefused(ResponseStatusCode.UnsupportedConnectVersion,
                                      f"connect version {version} is not supported")
            if frame.operation != Operation.Connect.value:
                raise _ConnectRefused(ResponseStatusCode.UnexpectedOperation,
                                      "the first request must be Connect")
            try:
                req = decode_connect(frame.payload)
            except (ProtocolError, TypeError, ValueError) as exc:
                raise _ConnectRefused(ResponseStatusCode.InvalidRequest, str(exc)) from exc
            if isinstance(req.request_id, str):
                resp.request_id = req.request_id
            token = req.auth_token if isinstance(req.auth_token, str) else ""
            if not self._token_ok(token):
                raise _ConnectRefused(ResponseStatusCode.Unauthorized,
                                      "invalid AWS_CONTAINER_AUTHORIZATION_TOKEN")
            offered = [req.protocol_version, *(req.other_supported_protocol_versions or [])]
            chosen = next((v for v in offered if v in SUPPORTED_PROTOCOL_VERSIONS), None)
            if chosen is None:
                raise _ConnectRefused(ResponseStatusCode.UnsupportedProtocolVersion,
                                      f"protocol versions {offered} are not supported")
            resp.protocol_version = chosen
            resp.client_identifier = uuid.uuid4().hex
        except _ConnectRefused as refused:
            resp.status, resp.error_message = refused.status, refused.message
            log.warning("refused client: %s", refused.message)
        await conn.send(bytes([CONNECT_VERSION]) + encode_message(Operation.ConnectResponse, resp))
        return resp.status == ResponseStatusCode.Success

    async def _dispatch(self, frame: Frame, conn: _Connection) -> None:
        try:
            op: Operation | None = Operation(frame.operation)
        except ValueError:
            op = None
        entry = REQUESTS.get(op) if op is not None else None
        request_id = None
        try:
            raw = decode_payload(frame.payload)
            if isinstance(raw.get("requestId"), str):
                request_id = raw["requestId"]
        except ProtocolError:
            raw = None
        if entry is None:
            err = UnknownOperationError(request_id=request_id,
                                        status=ResponseStatusCode.UnknownOperation,
                                        error_message=f"unknown operation {frame.operation}")
            await conn.send(encode_message(Operation.UnknownOperationError, err))
            return
        req_cls, resp_op, resp_cls = entry
        try:
            if raw is None:
                raise InvalidRequest("request payload is not a CBOR map")
            try:
                req = req_cls.from_dict(raw)
            except (TypeError, ValueError, AttributeError) as exc:
                raise InvalidRequest(f"malformed {req_cls.__name__}: {exc}") from exc
            problem = UtilInternal.is_invalid(req)
            if problem:
                raise InvalidRequest(problem)
            if op == Operation.ReadMessages:
                fields = self._read_or_defer(req, conn, resp_op, resp_cls)
                if fields is None:
                    return  # answered later by a waiting task
            else:
                fields = self._handle(op, req)
            resp = resp_cls(request_id=request_id, status=ResponseStatusCode.Success, **fields)
        except RequestError as exc:
            resp = resp_cls(request_id=request_id, status=exc.status, error_message=exc.message)
        except Exception as exc:  # a bug here must not take the connection down
            log.exception("%s failed", req_cls.__name__)
            resp = resp_cls(request_id=request_id, status=ResponseStatusCode.UnknownFailure,
                            error_message=f"{type(exc).__name__}: {exc}")
        await conn.send(encode_message(resp_op, resp))

    # -- operations --------------------------------------------------------------------------
    def _handle(self, op: Operation, req: Any) -> dict[str, Any]:
        if op == Operation.AppendMessage:
            stream = self.store.get(req.name)
            self._check_append(stream.definition, req.payload)
            return {"sequence_number": self.store.append(req.name, req.payload)}
        if op == Operation.CreateMessageStream:
            self._check_definition(req.definition)
            self.store.create(req.definition)
            self.exports.sync(req.definition.name)
            return {}
        if op == Operation.UpdateMessageStream:
            self.store.get(req.definition.name)
            self._check_definition(req.definition)
            self.store.update(req.definition)
            self.exports.sync(req.definition.name)
            return {}
        if op == Operation.DeleteMessageStream:
            stream = self.store.get(req.name)
            self.exports.cancel_pending(stream)
            self.store.delete(req.name)
            self.exports.sync(req.name)
            return {}
        if op == Operation.DescribeMessageStream:
            stream = self.store.get(req.name)
            info = MessageStreamInfo(
                definition=stream.definition,
                storage_status=MessageStreamInfo.storageStatus(
                    oldest_sequence_number=stream.oldest_sequence_number,
                    newest_sequence_number=stream.newest_sequence_number,
                    total_bytes=stream.total_bytes,
                ),
                export_statuses=self.exports.export_statuses(stream),
            )
            return {"message_stream_info": info}
        if op == Operation.ListStreams:
            return {"streams": self.store.names()}
        raise InvalidRequest(f"operation {op.name} is not supported")

    def _check_definition(self, definition: MessageStreamDefinition) -> None:
        export = definition.export_definition
        if export is None:
            return
        seen: set[str] = set()
        for kind in ("http", "iot_analytics", "kinesis", "iot_sitewise", "s3_task_executor"):
            for cfg in getattr(export, kind) or []:
                if cfg.identifier in seen:
                    raise InvalidRequest(f"export identifier {cfg.identifier!r} is used twice")
                seen.add(cfg.identifier)
        for cfg in export.s3_task_executor or []:
            sc = cfg.status_config
            if sc is None or not sc.status_stream_name:
                continue
            if sc.status_stream_name == definition.name:
                raise InvalidRequest("a stream cannot be its own status stream")
            if self.store.find(sc.status_stream_name) is None:
                raise InvalidRequest(
                    f"status stream {sc.status_stream_name!r} does not exist; create it first"
                )

    @staticmethod
    def _check_append(definition: MessageStreamDefinition, payload: bytes) -> None:
        """Messages of an S3 export task stream must be S3ExportTaskDefinitions."""
        export = definition.export_definition
        if export is not None and export.s3_task_executor:
            try:
                parse_s3_task(payload)
            except ExportTaskError as exc:
                raise InvalidRequest(
                    f"stream {definition.name!r} exports to S3: {exc}"
                ) from exc

    def _read_now(self, req: ReadMessagesRequest) -> list[Message] | None:
        """Messages to answer with now, or None if fewer than min_message_count exist."""
        stream = self.store.get(req.stream_name)
        opts = req.read_messages_options
        start = (opts.desired_start_sequence_number if opts else None) or 0
        min_count = (opts.min_message_count if opts else None) or 1
        max_count = (opts.max_message_count if opts else None) or min_count
        if min_count > max_count:
            raise InvalidRequest("min_message_count must be less than or equal to "
                                 "max_message_count")
        start = max(start, stream.oldest_sequence_number)
        if stream.newest_sequence_number - start + 1 < min_count:
            return None
        stored = stream.read(start, max_count, READ_SOFT_LIMIT)
        if len(stored) < min_count:  # large messages: return exactly the minimum if it fits
            stored = stream.read(start, min_count, MAX_PACKET_SIZE)
            if len(stored) < min_count or sum(len(m.payload) for m in stored) > (
                MAX_PACKET_SIZE - 1024 * len(stored)
            ):
                raise ResponseTooLarge(f"{min_count} messages do not fit in one response")
        return [Message(stream_name=stream.name, sequence_number=m.sequence_number,
                        ingest_time=m.ingest_time, payload=m.payload) for m in stored]

    def _read_or_defer(self, req: ReadMessagesRequest, conn: _Connection, resp_op: Operation,
                       resp_cls: type) -> dict[str, Any] | None:
        messages = self._read_now(req)
        if messages is not None:
            return {"messages": messages}
        opts = req.read_messages_options
        timeout_ms = (opts.read_timeout_millis if opts else None) or 0
        if timeout_ms <= 0:
            raise self._not_enough(req)
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._read_later(req, conn, resp_op, resp_cls,
                                                 loop.time() + timeout_ms / 1000))
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)
        return None

    @staticmethod
    def _not_enough(req: ReadMessagesRequest) -> NotEnoughMessages:
        opts = req.read_messages_options
        return NotEnoughMessages(
            f"stream {req.stream_name!r} has fewer than {(opts and opts.min_message_count) or 1} "
            f"messages from sequence number {(opts and opts.desired_start_sequence_number) or 0}"
        )

    async def _read_later(self, req: ReadMessagesRequest, conn: _Connection, resp_op: Operation,
                          resp_cls: type, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                messages = self._read_now(req)
                if messages is not None:
                    resp = resp_cls(request_id=req.request_id, status=ResponseStatusCode.Success,
                                    messages=messages)
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._not_enough(req)
                await self.wakeups.wait((req.stream_name,), remaining)
        except RequestError as exc:
            resp = resp_cls(request_id=req.request_id, status=exc.status,
                            error_message=exc.message)
        with contextlib.suppress(ConnectionError):
            await conn.send(encode_message(resp_op, resp))


class _ConnectRefused(Exception):
    def __init__(self, status: ResponseStatusCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
