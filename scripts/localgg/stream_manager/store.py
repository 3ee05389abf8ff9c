"""Message streams kept as append-only segment files, rebuilt from disk on start.

Layout under the store directory, one folder per File-persisted stream:
    <dir>/stream.json             definition (SDK dict form) + an incarnation id
    <dir>/<base seq:020d>.seg     records: >IQqI header (payload length, sequence number,
                                  ingest time ms, crc32) then the payload
    <dir>/exports.json            export progress per export identifier
Each append is one unbuffered write(2), so an acknowledged message survives a kill of the process
(fsync too when flushOnWrite). A torn or corrupt tail record is cut off when the segment is
loaded. Memory streams live only in this process, as the real Stream Manager's do.
Size accounting (maxSize, totalBytes) counts header + payload bytes; data is dropped a whole
segment at a time, as the real one does.
All methods run on one thread (the server's event loop); there is no locking.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from stream_manager.data import (
    MessageStreamDefinition,
    Persistence,
    StrategyOnFull,
)

from .errors import InvalidRequest, StreamFull, StreamNotFound, UpdateNotAllowed

log = logging.getLogger("localgg.stream_manager.store")

RECORD_HEADER_SIZE = 24
DEFAULT_MAX_SIZE = 256 * 1024 * 1024
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
_SEGMENT_SUFFIX = ".seg"


def now_ms() -> int:
    return int(time.time() * 1000)


def _pack_header(length: int, seq: int, ingest: int, crc: int) -> bytes:
    return (
        length.to_bytes(4, "big")
        + seq.to_bytes(8, "big")
        + ingest.to_bytes(8, "big", signed=True)
        + crc.to_bytes(4, "big")
    )


def _record_crc(header_without_crc: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(header_without_crc))


@dataclass(frozen=True)
class StoredMessage:
    sequence_number: int
    ingest_time: int
    payload: bytes


@dataclass
class ExportProgress:
    """How far one export configuration of a stream has got (persisted with the stream)."""

    next_sequence_number: int = 0
    last_export_time: int = 0
    exported_bytes: int = 0
    exported_messages: int = 0
    error_message: str | None = None


@dataclass
class _Record:
    ingest_time: int
    offset: int
    length: int
    payload: bytes | None = None


@dataclass
class Segment:
    """A run of consecutive sequence numbers, in a file or (Memory persistence) in RAM."""

    base_seq: int
    path: Path | None
    records: list[_Record] = field(default_factory=list)
    size: int = 0
    _wfd: int | None = None
    _rfd: int | None = None

    @property
    def end_seq(self) -> int:
        return self.base_seq + len(self.records)

    def append(self, seq: int, ingest: int, payload: bytes, fsync: bool) -> None:
        if self.path is None:
            self.records.append(_Record(ingest, 0, len(payload), payload))
        else:
            if self._wfd is None:
                self._wfd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            head = _pack_header(len(payload), seq, ingest, 0)[:20]
            crc = _record_crc(head, payload)
            data = head + crc.to_bytes(4, "big") + payload
            written = os.write(self._wfd, data)
            while written < len(data):  # write(2) to a regular file is rarely short
                written += os.write(self._wfd, data[written:])
            if fsync:
                os.fsync(self._wfd)
            self.records.append(_Record(ingest, self.size + RECORD_HEADER_SIZE, len(payload)))
        self.size += RECORD_HEADER_SIZE + len(payload)

    def payload(self, index: int) -> bytes:
        rec = self.records[index]
        if rec.payload is not None:
            return rec.payload
        if self._rfd is None:
            assert self.path is not None
            self._rfd = os.open(self.path, os.O_RDONLY)
        data = os.pread(self._rfd, rec.length, rec.offset)
        if len(data) != rec.length:
            raise OSError(f"short read in {self.path} at {rec.offset}")
        return data

    def close(self) -> None:
        for fd in (self._wfd, self._rfd):
            if fd is not None:
                os.close(fd)
        self._wfd = self._rfd = None

    def remove(self) -> None:
        self.close()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    @classmethod
    def load(cls, path: Path, base_seq: int) -> Segment:
        """Index a segment file; cut it at the first torn or corrupt record."""
        seg = cls(base_seq, path)
        good = 0
        with path.open("rb") as f:
            while True:
                head = f.read(RECORD_HEADER_SIZE)
                if not head:
                    break
                if len(head) < RECORD_HEADER_SIZE:
                    break
                length = int.from_bytes(head[0:4], "big")
                seq = int.from_bytes(head[4:12], "big")
                ingest = int.from_bytes(head[12:20], "big", signed=True)
                crc = int.from_bytes(head[20:24], "big")
                payload = f.read(length)
                if len(payload) < length or seq != seg.end_seq:
                    break
                if _record_crc(head[:20], payload) != crc:
                    break
                seg.records.append(_Record(ingest, good + RECORD_HEADER_SIZE, length))
                good += RECORD_HEADER_SIZE + length
        actual = path.stat().st_size
        if actual != good:
            log.warning("%s: cutting torn/corrupt tail (%d of %d bytes kept)", path, good, actual)
            os.truncate(path, good)
        seg.size = good
        return seg


def normalize_definition(definition: MessageStreamDefinition) -> MessageStreamDefinition:
    """Fill the defaults the real server applies, so describe shows effective values."""
    d = MessageStreamDefinition.from_dict(definition.as_dict())
    if d.max_size is None:
        d.max_size = DEFAULT_MAX_SIZE
    if d.stream_segment_size is None:
        d.stream_segment_size = DEFAULT_SEGMENT_SIZE
    if d.persistence is None:
        d.persistence = Persistence.File
    if d.flush_on_write is None:
        d.flush_on_write = False
    return d


def _dir_name(name: str) -> str:
    encoded = quote(name, safe="-_,")
    if len(encoded) > 180:
        encoded = encoded[:120] + "-" + hashlib.sha256(name.encode()).hexdigest()[:32]
    return "s-" + encoded


def _atomic_write_json(path: Path, value: object) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(value, sort_keys=True))
    os.replace(tmp, path)


class MessageStream:
    """One stream: definition, segments, next sequence number and export progress."""

    def __init__(
        self,
        definition: MessageStreamDefinition,
        directory: Path | None,
        stream_id: str,
    ) -> None:
        self.definition = definition
        self.directory = directory
        self.stream_id = stream_id
        self.segments: list[Segment] = []
        self.next_seq = 0
        self.total_bytes = 0
        self.progress: dict[str, ExportProgress] = {}

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def persistent(self) -> bool:
        return self.directory is not None

    @property
    def oldest_sequence_number(self) -> int:
        for seg in self.segments:
            if seg.records:
                return seg.base_seq
        return self.next_seq

    @property
    def newest_sequence_number(self) -> int:
        return self.next_seq - 1

    # -- persistence -------------------------------------------------------------------------
    def save_definition(self) -> None:
        if self.directory is not None:
            _atomic_write_json(
                self.directory / "stream.json",
                {"id": self.stream_id, "definition": self.definition.as_dict()},
            )

    def save_progress(self) -> None:
        if self.directory is not None:
            _atomic_write_json(
                self.directory / "exports.json",
                {k: asdict(v) for k, v in self.progress.items()},
            )

    def export_progress(self, identifier: str, start: int = 0) -> ExportProgress:
        prog = self.progress.get(identifier)
        if prog is None:
            prog = self.progress[identifier] = ExportProgress(next_sequence_number=start)
        return prog

    @classmethod
    def open(cls, directory: Path) -> MessageStream:
        for leftover in directory.glob(".*.tmp"):  # a save interrupted by a crash
            leftover.unlink()
        meta = json.loads((directory / "stream.json").read_text())
        definition = MessageStreamDefinition.from_dict(meta["definition"])
        stream = cls(definition, directory, meta["id"])
        bases = sorted(
            int(p.name[: -len(_SEGMENT_SUFFIX)])
            for p in directory.glob("*" + _SEGMENT_SUFFIX)
            if p.name[: -len(_SEGMENT_SUFFIX)].isdigit()
        )
        for base in bases:
            seg = Segment.load(directory / f"{base:020d}{_SEGMENT_SUFFIX}", base)
            if stream.segments and base < stream.segments[-1].end_seq:
                log.error("%s: overlapping segment %d ignored", directory, base)
                continue
            stream.segments.append(seg)
            stream.total_bytes += seg.size
        if stream.segments:
            stream.next_seq = stream.segments[-1].end_seq
        progress_file = directory / "exports.json"
        if progress_file.exists():
            try:
                raw = json.loads(progress_file.read_text())
                stream.progress = {k: ExportProgress(**v) for k, v in raw.items()}
            except (ValueError, TypeError) as exc:
                log.error("%s: unreadable export progress (%s); exports restart", directory, exc)
        return stream

    def close(self) -> None:
        for seg in self.segments:
            seg.close()

    # -- data --------------------------------------------------------------------------------
    def _new_segment(self) -> Segment:
        path = None
        if self.directory is not None:
            path = self.directory / f"{self.next_seq:020d}{_SEGMENT_SUFFIX}"
        seg = Segment(self.next_seq, path)
        self.segments.append(seg)
        return seg

    def _drop_oldest(self) -> None:
        seg = self.segments.pop(0)
        self.total_bytes -= seg.size
        seg.remove()
        log.info("stream %s: dropped segment %d..%d", self.name, seg.base_seq, seg.end_seq - 1)

    def expire(self, now: int) -> None:
        """Drop whole segments older than timeToLiveMillis (never the one being written)."""
        ttl = self.definition.time_to_live_millis
        if not ttl:
            return
        while len(self.segments) > 1:
            seg = self.segments[0]
            if seg.records and seg.records[-1].ingest_time >= now - ttl:
                break
            self._drop_oldest()

    def append(self, payload: bytes, ingest: int | None = None) -> int:
        ingest = now_ms() if ingest is None else ingest
        self.expire(ingest)
        size = RECORD_HEADER_SIZE + len(payload)
        max_size = self.definition.max_size or DEFAULT_MAX_SIZE
        if size > max_size:
            raise InvalidRequest(
                f"message of {len(payload)} bytes cannot fit in stream {self.name!r} "
                f"(maxSize {max_size} bytes, {RECORD_HEADER_SIZE} bytes overhead per message)"
            )
        if self.total_bytes + size > max_size:
            if self.definition.strategy_on_full == StrategyOnFull.RejectNewData:
                raise StreamFull(
                    f"stream {self.name!r} is full ({self.total_bytes} of {max_size} bytes) "
                    "and its strategyOnFull is RejectNewData"
                )
            while self.total_bytes + size > max_size and len(self.segments) > 1:
                self._drop_oldest()
            if self.total_bytes + size > max_size:
                self._new_segment()
                while len(self.segments) > 1:
                    self._drop_oldest()
        seg = self.segments[-1] if self.segments else self._new_segment()
        seg_limit = self.definition.stream_segment_size or DEFAULT_SEGMENT_SIZE
        if seg.records and seg.size + size > seg_limit:
            seg.close()
            seg = self._new_segment()
        flush = bool(self.definition.flush_on_write) and self.persistent
        seq = self.next_seq
        seg.append(seq, ingest, payload, flush)
        self.next_seq += 1
        self.total_bytes += size
        return seq

    def read(self, start: int, max_count: int, max_bytes: int) -> list[StoredMessage]:
        """Up to max_count messages from `start` (clamped to the oldest); stops past max_bytes
        but always returns at least one message if any exists."""
        out: list[StoredMessage] = []
        start = max(start, self.oldest_sequence_number)
        bases = [s.base_seq for s in self.segments]
        i = max(bisect.bisect_right(bases, start) - 1, 0)
        total = 0
        seq = start
        while i < len(self.segments) and len(out) < max_count:
            seg = self.segments[i]
            seq = max(seq, seg.base_seq)
            while seq < seg.end_seq and len(out) < max_count:
                idx = seq - seg.base_seq
                rec = seg.records[idx]
                if out and total + rec.length > max_bytes:
                    return out
                out.append(StoredMessage(seq, rec.ingest_time, seg.payload(idx)))
                total += rec.length
                seq += 1
            i += 1
        return out


class StreamStore:
    """All streams of one server; `on_change(name)` fires after appends, updates, deletes."""

    def __init__(self, directory: Path, on_change: Callable[[str], None] | None = None) -> None:
        self.directory = directory
        self.streams: dict[str, MessageStream] = {}
        self.on_change = on_change or (lambda name: None)

    def load(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for entry in sorted(self.directory.iterdir()):
            if entry.name.startswith(".deleted-"):
                shutil.rmtree(entry, ignore_errors=True)
                continue
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            if not (entry / "stream.json").exists():
                log.warning("%s: no stream.json (interrupted create); removed", entry)
                shutil.rmtree(entry, ignore_errors=True)
                continue
            try:
                stream = MessageStream.open(entry)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("%s: cannot load stream (%s); left on disk untouched", entry, exc)
                continue
            self.streams[stream.name] = stream
            log.info(
                "loaded stream %s: sequence %d..%d, %d bytes",
                stream.name,
                stream.oldest_sequence_number,
                stream.newest_sequence_number,
                stream.total_bytes,
            )

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()

    def names(self) -> list[str]:
        return sorted(self.streams)

    def find(self, name: str) -> MessageStream | None:
        return self.streams.get(name)

    def get(self, name: str) -> MessageStream:
        stream = self.streams.get(name)
        if stream is None:
            raise StreamNotFound(f"message stream {name!r} does not exist")
        return stream

    def create(self, definition: MessageStreamDefinition) -> MessageStream:
        if definition.name in self.streams:
            raise InvalidRequest(f"message stream {definition.name!r} already exists")
        definition = normalize_definition(definition)
        directory = None
        if definition.persistence == Persistence.File:
            directory = self.directory / _dir_name(definition.name)
            if directory.exists():  # a stream folder that could not be loaded: keep it aside
                aside = self.directory / f".unloadable-{directory.name}-{uuid.uuid4().hex[:8]}"
                log.warning("moving unloadable %s to %s", directory, aside)
                os.replace(directory, aside)
            directory.mkdir(parents=True)
        stream = MessageStream(definition, directory, uuid.uuid4().hex)
        stream.save_definition()
        self.streams[definition.name] = stream
        self.on_change(definition.name)
        return stream

    def update(self, definition: MessageStreamDefinition) -> MessageStream:
        stream = self.get(definition.name)
        definition = normalize_definition(definition)
        if definition.persistence != stream.definition.persistence:
            raise UpdateNotAllowed("persistence of an existing stream cannot be changed")
        stream.definition = definition
        stream.save_definition()
        self.on_change(definition.name)
        return stream

    def delete(self, name: str) -> MessageStream:
        stream = self.get(name)
        del self.streams[name]
        stream.close()
        if stream.directory is not None:
            grave = self.directory / f".deleted-{uuid.uuid4().hex}"
            os.replace(stream.directory, grave)
            shutil.rmtree(grave, ignore_errors=True)
        self.on_change(name)
        return stream

    def append(self, name: str, payload: bytes) -> int:
        seq = self.get(name).append(payload)
        self.on_change(name)
        return seq
