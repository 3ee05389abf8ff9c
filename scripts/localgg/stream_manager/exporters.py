"""Local stand-ins for the cloud exports: S3 export tasks into a folder, Kinesis into a file.

Each export configuration of a stream runs as one asyncio task that follows the stream from its
persisted progress, so nothing exported is exported again after a restart and nothing left
unexported is forgotten. Nothing is exported while offline; data stays in the stream.
S3 tasks: the stream holds JSON `S3ExportTaskDefinition`s; the file at the file:// inputUrl is
copied atomically to <bucket_root>/<bucket>/<key> (userMetadata, if any, beside it under
<bucket_root>/.metadata/<bucket>/<key>.json) and `StatusMessage`s go to the status stream:
InProgress (INFO) before, then Success (INFO) or Failure (ERROR); pending tasks of a deleted
stream get Canceled (WARN). The status stream is the record of what was carried out: progress is
saved at most once a second, and on start the newest status of each exporter moves it on, so a
kill in between never runs a task twice.
Kinesis: each exported record is one JSON line in the Kinesis log, written before progress is
saved; on start the log is scanned so a kill between the two never exports a record twice.
HTTP, IoT Analytics and IoT SiteWise exports are not emulated: their data stays buffered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import stat
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlparse

from stream_manager.data import (
    EventType,
    KinesisConfig,
    MessageStreamInfo,
    S3ExportTaskDefinition,
    S3ExportTaskExecutorConfig,
    Status,
    StatusContext,
    StatusLevel,
    StatusMessage,
)
from stream_manager.util import Util
from stream_manager.utilinternal import UtilInternal

from .errors import RequestError
from .store import MessageStream, StoredMessage, StreamStore, now_ms
from .wakeups import ONLINE, Wakeups

log = logging.getLogger("localgg.stream_manager.exporters")

KINESIS_DEFAULT_BATCH = 500
PROGRESS_SAVE_INTERVAL_S = 1.0
STATUS_SCAN_LIMIT = 10_000  # statuses read back on start: far more than a second's worth
RETRY_S = 1.0
INLINE_COPY_BYTES = 256 * 1024  # smaller files are copied on the event loop itself
_READ_BYTES = 8 * 1024 * 1024


class ExportTaskError(Exception):
    """An S3 export task cannot be carried out; its message goes into the Failure status."""


def parse_s3_task(payload: bytes) -> S3ExportTaskDefinition:
    """Decode and validate an appended S3ExportTaskDefinition (JSON, as the SDK serializes it)."""
    try:
        raw = json.loads(payload)
    except ValueError as exc:
        raise ExportTaskError(f"message is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ExportTaskError("message is not a JSON object")
    try:
        task = S3ExportTaskDefinition.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise ExportTaskError(f"not an S3ExportTaskDefinition: {exc}") from exc
    problem = UtilInternal.is_invalid(task)
    if problem:
        raise ExportTaskError(f"invalid S3ExportTaskDefinition: {problem}")
    return task


def input_path(url: str) -> Path:
    parsed = urlparse(url)
    if parsed.scheme != "file":
        raise ExportTaskError(f"inputUrl {url!r} is not a file:// URL")
    if parsed.netloc not in ("", "localhost"):
        raise ExportTaskError(f"inputUrl {url!r} must be an absolute file:///path URL")
    path = Path(unquote(parsed.path))
    if not path.is_absolute():
        raise ExportTaskError(f"inputUrl {url!r} must hold an absolute path")
    return path


_PLACEHOLDER = re.compile(r"!\{timestamp:([^}]*)\}")
_PATTERN_RUN = re.compile(r"'[^']*'|([A-Za-z])\1*|[^A-Za-z']+")


def _java_time_format(pattern: str, when: datetime) -> str:
    """The subset of java.time.DateTimeFormatter patterns that keys use (y M d H m s S)."""
    out = []
    for match in _PATTERN_RUN.finditer(pattern):
        run = match.group(0)
        letter = run[0]
        if letter == "'":
            out.append(run[1:-1] or "'")
        elif not letter.isalpha():
            out.append(run)
        elif letter in ("y", "u"):
            out.append(f"{when.year % 100:02d}" if len(run) == 2 else f"{when.year:0{len(run)}d}")
        elif letter in "MdHms":
            value = {
                "M": when.month,
                "d": when.day,
                "H": when.hour,
                "m": when.minute,
                "s": when.second,
            }[letter]
            out.append(f"{value:0{len(run)}d}")
        elif letter == "S":
            out.append(f"{when.microsecond:06d}"[: len(run)].ljust(len(run), "0"))
        else:
            raise ExportTaskError(f"unsupported timestamp pattern letter {letter!r} in key")
    return "".join(out)


def resolve_key(key: str, when: datetime | None = None) -> str:
    when = when or datetime.now(timezone.utc)
    return _PLACEHOLDER.sub(lambda m: _java_time_format(m.group(1), when), key)


def bucket_path(bucket_root: Path, bucket: str, key: str) -> Path:
    parts = [p for p in key.split("/") if p]
    if not parts or key.endswith("/"):
        raise ExportTaskError(f"key {key!r} does not name an object")
    if any(p in (".", "..") for p in parts):
        raise ExportTaskError(f"key {key!r} has '.' or '..' segments, which this local bucket "
                              "folder cannot hold")
    return bucket_root.joinpath(bucket, *parts)


def _write_new(dest: Path, write: Callable[[int], None]) -> None:
    """Write a temporary file beside dest with write(fd), then rename it over dest."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:  # first object under this prefix
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            write(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _copy_into(src: Path, dest: Path) -> int:
    """Copy src atomically to dest; its size."""
    try:
        fin = os.open(src, os.O_RDONLY)
    except FileNotFoundError:
        raise ExportTaskError(f"input file {src} does not exist") from None
    except OSError as exc:
        raise ExportTaskError(f"input file {src} cannot be read: {exc}") from exc
    try:
        st = os.fstat(fin)
        if not stat.S_ISREG(st.st_mode):
            raise ExportTaskError(f"input {src} is not a regular file")

        def copy(fout: int) -> None:
            left = st.st_size
            while left > 0:
                sent = os.sendfile(fout, fin, None, min(left, 1 << 30))
                if sent == 0:
                    break  # the file shrank while it was copied
                left -= sent

        try:
            _write_new(dest, copy)
        except OSError as exc:
            raise ExportTaskError(f"copying {src} to {dest} failed: {exc}") from exc
        return st.st_size
    finally:
        os.close(fin)


def run_s3_task(task: S3ExportTaskDefinition, bucket_root: Path) -> tuple[Path, str]:
    """Blocking part of an S3 task; returns (object path, key)."""
    src = input_path(task.input_url)
    key = resolve_key(task.key)
    dest = bucket_path(bucket_root, task.bucket, key)
    _copy_into(src, dest)
    if task.user_metadata:
        meta = bucket_root / ".metadata" / task.bucket / (key.strip("/") + ".json")
        data = json.dumps(task.user_metadata, sort_keys=True).encode()
        _write_new(meta, lambda fd: _write_all(fd, data))
    return dest, key


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _input_size(task: S3ExportTaskDefinition) -> int:
    try:
        return os.stat(input_path(task.input_url)).st_size
    except (OSError, ExportTaskError):
        return 0  # run_s3_task reports the problem


@dataclass(frozen=True)
class _ExporterKey:
    stream: str
    stream_id: str
    kind: str
    identifier: str
    config: str  # JSON of the config: a changed config restarts the exporter


class ExportManager:
    """Starts, stops and reconciles the exporters of all streams of a store."""

    def __init__(
        self,
        store: StreamStore,
        wakeups: Wakeups,
        bucket_root: Path,
        kinesis_log: Path,
        is_online: Callable[[], bool],
    ) -> None:
        self.store = store
        self.wakeups = wakeups
        self.bucket_root = bucket_root
        self.kinesis_log = kinesis_log
        self.is_online = is_online
        self._tasks: dict[_ExporterKey, asyncio.Task[None]] = {}
        self._kinesis_fd: int | None = None
        self._warned: set[tuple[str, str]] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._recover_kinesis_progress()
        self._recover_s3_progress()
        for name in self.store.names():
            self.sync(name)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._kinesis_fd is not None:
            os.close(self._kinesis_fd)
            self._kinesis_fd = None

    def sync(self, name: str) -> None:
        """Make the running exporters of stream `name` match its current definition."""
        stream = self.store.find(name)
        wanted: dict[_ExporterKey, Callable[[], Exporter]] = {}
        if stream is not None:
            export = stream.definition.export_definition
            for cfg in (export.kinesis or []) if export else []:
                if not cfg.disabled:
                    key = _ExporterKey(name, stream.stream_id, "kinesis", cfg.identifier,
                                       json.dumps(cfg.as_dict(), sort_keys=True))
                    wanted[key] = lambda c=cfg, s=stream: KinesisExporter(self, s, c)
            for cfg in (export.s3_task_executor or []) if export else []:
                if not cfg.disabled:
                    key = _ExporterKey(name, stream.stream_id, "s3", cfg.identifier,
                                       json.dumps(cfg.as_dict(), sort_keys=True))
                    wanted[key] = lambda c=cfg, s=stream: S3TaskExporter(self, s, c)
            for kind in ("http", "iot_analytics", "iot_sitewise"):
                if export and getattr(export, kind) and (name, kind) not in self._warned:
                    self._warned.add((name, kind))
                    log.warning("stream %s: %s export is not emulated locally; its data stays "
                                "buffered", name, kind)
        for key in [k for k in self._tasks if k.stream == name and k not in wanted]:
            self._tasks.pop(key).cancel()
        for key, factory in wanted.items():
            if key not in self._tasks:
                self._tasks[key] = asyncio.get_running_loop().create_task(
                    factory().run(), name=f"export {key.kind} {name}/{key.identifier}"
                )

    # -- status ------------------------------------------------------------------------------
    def export_statuses(self, stream: MessageStream) -> list[MessageStreamInfo.exportStatuses]:
        export = stream.definition.export_definition
        out = []
        configs = []
        if export:
            for kind in ("kinesis", "s3_task_executor", "http", "iot_analytics", "iot_sitewise"):
                configs.extend(getattr(export, kind) or [])
        for cfg in configs:
            start = getattr(cfg, "start_sequence_number", None) or 0
            prog = stream.progress.get(cfg.identifier)
            next_seq = prog.next_sequence_number if prog else start
            out.append(
                MessageStreamInfo.exportStatuses(
                    export_config_identifier=cfg.identifier,
                    last_exported_sequence_number=next_seq - 1,
                    last_export_time=prog.last_export_time if prog else 0,
                    error_message=prog.error_message if prog else None,
                    exported_bytes_from_stream=prog.exported_bytes if prog else 0,
                    exported_messages_count=prog.exported_messages if prog else 0,
                )
            )
        return out

    def append_status(self, config: S3ExportTaskExecutorConfig, status: StatusMessage) -> None:
        sc = config.status_config
        if sc is None or not sc.status_stream_name:
            return
        wanted = sc.status_level or StatusLevel.INFO
        if status.status_level.value > wanted.value:
            return
        try:
            # Built here from validated parts: serialised without the SDK's (costly) re-check.
            payload = UtilInternal.serialize_to_json_with_empty_array_as_null(status)
            self.store.append(sc.status_stream_name, payload)
        except RequestError as exc:
            log.warning("status stream %s: status not recorded: %s", sc.status_stream_name, exc)

    def cancel_pending(self, stream: MessageStream) -> None:
        """Before a stream is deleted: Canceled status for each S3 task not yet carried out."""
        export = stream.definition.export_definition
        for cfg in (export.s3_task_executor or []) if export else []:
            prog = stream.progress.get(cfg.identifier)
            seq = max(prog.next_sequence_number if prog else 0, stream.oldest_sequence_number)
            while seq <= stream.newest_sequence_number:
                batch = stream.read(seq, 1000, _READ_BYTES)
                for msg in batch:
                    with contextlib.suppress(ExportTaskError):
                        task = parse_s3_task(msg.payload)
                        self.append_status(cfg, s3_status(
                            Status.Canceled, StatusLevel.WARN, task, cfg, stream.name,
                            msg.sequence_number, "export task canceled: its stream was deleted"))
                seq = batch[-1].sequence_number + 1 if batch else stream.next_seq

    # -- kinesis log -------------------------------------------------------------------------
    def write_kinesis(self, lines: list[str]) -> None:
        if self._kinesis_fd is None:
            self.kinesis_log.parent.mkdir(parents=True, exist_ok=True)
            self._kinesis_fd = os.open(self.kinesis_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                       0o644)
        data = "".join(line + "\n" for line in lines).encode()
        written = os.write(self._kinesis_fd, data)
        while written < len(data):
            written += os.write(self._kinesis_fd, data[written:])

    def _recover_kinesis_progress(self) -> None:
        if not self.kinesis_log.exists():
            return
        newest: dict[tuple[str, str], int] = {}
        try:
            with self.kinesis_log.open("rb") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        k = (rec["streamId"], rec["exportIdentifier"])
                        newest[k] = max(newest.get(k, -1), int(rec["sequenceNumber"]))
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line after a crash
        except OSError as exc:
            log.error("cannot read Kinesis log %s (%s): progress comes from exports.json only",
                      self.kinesis_log, exc)
        for name in self.store.names():
            stream = self.store.get(name)
            changed = False
            for (sid, ident), seq in newest.items():
                if sid != stream.stream_id:
                    continue
                prog = stream.export_progress(ident)
                if prog.next_sequence_number <= seq:
                    log.info("stream %s/%s: progress recovered from Kinesis log (%d -> %d)",
                             name, ident, prog.next_sequence_number, seq + 1)
                    prog.next_sequence_number = seq + 1
                    changed = True
            if changed:
                stream.save_progress()


    def _recover_s3_progress(self) -> None:
        for name in self.store.names():
            stream = self.store.get(name)
            export = stream.definition.export_definition
            changed = False
            for cfg in (export.s3_task_executor or []) if export else []:
                status_name = cfg.status_config.status_stream_name if cfg.status_config else None
                done = self._newest_reported(status_name, name, cfg.identifier)
                prog = stream.export_progress(cfg.identifier)
                if done is not None and prog.next_sequence_number <= done:
                    log.info("stream %s/%s: progress recovered from status stream %s (%d -> %d)",
                             name, cfg.identifier, status_name, prog.next_sequence_number,
                             done + 1)
                    prog.next_sequence_number = done + 1
                    changed = True
            if changed:
                stream.save_progress()

    def _newest_reported(self, status_name: str | None, name: str, ident: str) -> int | None:
        """Sequence number of the newest task of (name, ident) with a final status."""
        status_stream = self.store.find(status_name) if status_name else None
        if status_stream is None:
            return None
        newest = None
        seq = max(status_stream.oldest_sequence_number,
                  status_stream.next_seq - STATUS_SCAN_LIMIT)
        while seq < status_stream.next_seq:
            batch = status_stream.read(seq, 1000, _READ_BYTES)
            if not batch:
                break
            for msg in batch:
                try:
                    status = Util.deserialize_json_bytes_to_obj(msg.payload, StatusMessage)
                except Exception:  # not ours to judge: any writer may use a status stream
                    continue
                ctx = status.status_context
                if (status.status in _FINAL and ctx is not None and ctx.stream_name == name
                        and ctx.export_identifier == ident and ctx.sequence_number is not None):
                    newest = max(newest if newest is not None else -1, ctx.sequence_number)
            seq = batch[-1].sequence_number + 1
        return newest


_FINAL = (Status.Success, Status.Failure)


def s3_status(
    status: Status,
    level: StatusLevel,
    task: S3ExportTaskDefinition | None,
    config: S3ExportTaskExecutorConfig,
    stream_name: str,
    seq: int,
    message: str,
) -> StatusMessage:
    return StatusMessage(
        event_type=EventType.S3Task,
        status_level=level,
        status=status,
        status_context=StatusContext(
            s3_export_task_definition=task,
            export_identifier=config.identifier,
            stream_name=stream_name,
            sequence_number=seq,
        ),
        message=message,
        timestamp_epoch_ms=now_ms(),
    )


class Exporter:
    """Follows one stream for one export configuration."""

    def __init__(self, manager: ExportManager, stream: MessageStream, identifier: str,
                 start: int) -> None:
        self.manager = manager
        self.stream = stream
        self.identifier = identifier
        self.start = start
        self._saved = 0.0

    def alive(self) -> bool:
        return self.manager.store.find(self.stream.name) is self.stream

    async def run(self) -> None:
        try:
            while self.alive():
                try:
                    await self._run_once()
                except Exception as exc:  # e.g. disk full: report, wait, try again
                    log.exception("exporter %s/%s failed; retrying in %.0f s", self.stream.name,
                                  self.identifier, RETRY_S)
                    self.stream.export_progress(self.identifier, self.start).error_message = (
                        f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(RETRY_S)
        except asyncio.CancelledError:
            self.finish()
            raise

    async def _run_once(self) -> None:
        if not self.manager.is_online():
            await self.manager.wakeups.wait((ONLINE,), None)
            return
        prog = self.stream.export_progress(self.identifier, self.start)
        oldest = self.stream.oldest_sequence_number
        if prog.next_sequence_number < oldest:
            log.warning("stream %s/%s: messages %d..%d were dropped before export",
                        self.stream.name, self.identifier, prog.next_sequence_number, oldest - 1)
            prog.next_sequence_number = oldest
            self.stream.save_progress()
        timeout = await self.step(prog.next_sequence_number)
        if timeout != 0:
            await self.manager.wakeups.wait((self.stream.name, ONLINE), timeout)

    def save_progress_soon(self) -> None:
        """Progress at most once a second: the export's own record (Kinesis log, status
        stream) covers a kill in between, and is read back on start."""
        if time.monotonic() - self._saved >= PROGRESS_SAVE_INTERVAL_S:
            self.stream.save_progress()
            self._saved = time.monotonic()

    def finish(self) -> None:
        """Called when the exporter is stopped: saves the progress kept in memory."""
        if self.alive():
            self.stream.save_progress()

    async def step(self, next_seq: int) -> float | None:
        """Export what is due from next_seq; return 0 to go on, else how long to wait."""
        raise NotImplementedError


class S3TaskExporter(Exporter):
    def __init__(self, manager: ExportManager, stream: MessageStream,
                 config: S3ExportTaskExecutorConfig) -> None:
        super().__init__(manager, stream, config.identifier, 0)
        self.config = config

    async def step(self, next_seq: int) -> float | None:
        batch = self.stream.read(next_seq, 1, _READ_BYTES)
        if not batch:
            return None
        await self.export(batch[0])
        return 0

    async def export(self, msg: StoredMessage) -> None:
        name, seq, cfg = self.stream.name, msg.sequence_number, self.config
        task: S3ExportTaskDefinition | None = None
        error: str | None = None
        try:
            task = parse_s3_task(msg.payload)
            self.manager.append_status(cfg, s3_status(
                Status.InProgress, StatusLevel.INFO, task, cfg, name, seq, "upload in progress"))
            if _input_size(task) <= INLINE_COPY_BYTES:  # a thread hand-off costs more
                _, key = run_s3_task(task, self.manager.bucket_root)
            else:
                _, key = await asyncio.to_thread(run_s3_task, task, self.manager.bucket_root)
        except ExportTaskError as exc:
            error = str(exc)
        except OSError as exc:
            error = f"export to the local bucket folder failed: {exc}"
        if not self.alive():
            return
        if error is None:
            assert task is not None
            self.manager.append_status(cfg, s3_status(
                Status.Success, StatusLevel.INFO, task, cfg, name, seq,
                f"uploaded to s3://{task.bucket}/{key}"))
        else:
            log.warning("stream %s seq %d: S3 export task failed: %s", name, seq, error)
            self.manager.append_status(cfg, s3_status(
                Status.Failure, StatusLevel.ERROR, task, cfg, name, seq, error))
        prog = self.stream.export_progress(self.identifier)
        prog.next_sequence_number = seq + 1
        prog.last_export_time = now_ms()
        prog.exported_bytes += len(msg.payload)
        prog.exported_messages += 1
        prog.error_message = error
        self.save_progress_soon()


class KinesisExporter(Exporter):
    def __init__(self, manager: ExportManager, stream: MessageStream,
                 config: KinesisConfig) -> None:
        super().__init__(manager, stream, config.identifier, config.start_sequence_number or 0)
        self.config = config

    async def step(self, next_seq: int) -> float | None:
        cfg = self.config
        available = self.stream.newest_sequence_number - next_seq + 1
        if available <= 0:
            return None
        batch_size = cfg.batch_size or KINESIS_DEFAULT_BATCH
        if (cfg.batch_size is not None or cfg.batch_interval_millis is not None) and (
            available < batch_size
        ):
            if cfg.batch_interval_millis is None:
                return None  # batch size only: wait for a full batch, as the real one does
            first = self.stream.read(next_seq, 1, _READ_BYTES)[0]
            age = now_ms() - first.ingest_time
            if age < cfg.batch_interval_millis:
                return (cfg.batch_interval_millis - age) / 1000
        batch = self.stream.read(next_seq, batch_size, _READ_BYTES)
        exported = now_ms()
        lines = []
        for msg in batch:
            try:
                text: str | None = msg.payload.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            lines.append(json.dumps({
                "streamName": self.stream.name,
                "streamId": self.stream.stream_id,
                "exportIdentifier": self.identifier,
                "kinesisStreamName": cfg.kinesis_stream_name,
                "sequenceNumber": msg.sequence_number,
                "ingestTime": msg.ingest_time,
                "exportTime": exported,
                "partitionKey": uuid.uuid4().hex,
                "dataBase64": base64.b64encode(msg.payload).decode("ascii"),
                "dataUtf8": text,
            }))
        self.manager.write_kinesis(lines)
        prog = self.stream.export_progress(self.identifier, self.start)
        prog.next_sequence_number = batch[-1].sequence_number + 1
        prog.last_export_time = exported
        prog.exported_bytes += sum(len(m.payload) for m in batch)
        prog.exported_messages += len(batch)
        prog.error_message = None
        self.save_progress_soon()
        return 0
