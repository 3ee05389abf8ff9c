"""AWS event-stream binary framing (the wire format under Greengrass IPC).

A message is: prelude (total length u32, headers length u32, CRC32 of those 8 bytes), headers,
payload, and a CRC32 of everything before it. All integers are big-endian. Header values carry a
one-byte type tag; see ``HeaderType``. Limits follow awslabs/aws-c-event-stream so that a frame we
accept is one the awscrt client could have produced, and a frame we emit is one it will accept.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

PRELUDE_LENGTH = 12
TRAILER_LENGTH = 4
MAX_MESSAGE_SIZE = 24 * 1024 * 1024
MAX_HEADER_NAME_LENGTH = 255
MAX_HEADER_VALUE_LENGTH = 32767

_PRELUDE = struct.Struct(">II")
_PRELUDE_FULL = struct.Struct(">III")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_crc32 = zlib.crc32


class EventStreamError(ValueError):
    """A frame that violates the event-stream format (bad CRC, bad length, bad header)."""


class HeaderType(IntEnum):
    """Header value type tags, as numbered on the wire."""

    BOOL_TRUE = 0
    BOOL_FALSE = 1
    BYTE = 2
    INT16 = 3
    INT32 = 4
    INT64 = 5
    BYTE_BUF = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9


class Header(NamedTuple):
    """One typed header. TIMESTAMP values are the raw int64 carried on the wire."""

    name: str
    value: Any
    type: HeaderType

    @classmethod
    def string(cls, name: str, value: str) -> Header:
        return cls(name, value, HeaderType.STRING)

    @classmethod
    def int32(cls, name: str, value: int) -> Header:
        return cls(name, value, HeaderType.INT32)


@dataclass
class Message:
    """A decoded event-stream message."""

    headers: list[Header] = field(default_factory=list)
    payload: bytes = b""

    def header_values(self) -> dict[str, Any]:
        """Header values by lower-cased name (RPC header names are case-insensitive)."""
        return {h.name.lower(): h.value for h in self.headers}


def _check_range(value: int, bits: int, name: str) -> None:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if not low <= value <= high:
        raise EventStreamError(f"header {name!r}: {value} does not fit in int{bits}")


def encode_header(header: Header) -> bytes:
    """Encode one header (name length, name, type tag, value)."""
    name = header.name.encode("utf-8")
    if not 0 < len(name) <= MAX_HEADER_NAME_LENGTH:
        raise EventStreamError(f"header name length {len(name)} outside 1..255")
    htype = HeaderType(header.type)
    out = bytes((len(name),)) + name + bytes((htype,))
    value = header.value
    if htype in (HeaderType.BOOL_TRUE, HeaderType.BOOL_FALSE):
        return out
    if htype == HeaderType.BYTE:
        _check_range(value, 8, header.name)
        return out + _I8.pack(value)
    if htype == HeaderType.INT16:
        _check_range(value, 16, header.name)
        return out + _I16.pack(value)
    if htype == HeaderType.INT32:
        _check_range(value, 32, header.name)
        return out + _I32.pack(value)
    if htype in (HeaderType.INT64, HeaderType.TIMESTAMP):
        _check_range(value, 64, header.name)
        return out + _I64.pack(value)
    if htype in (HeaderType.BYTE_BUF, HeaderType.STRING):
        raw = value.encode("utf-8") if htype == HeaderType.STRING else bytes(value)
        if len(raw) > MAX_HEADER_VALUE_LENGTH:
            raise EventStreamError(f"header {header.name!r} value longer than 32767 bytes")
        return out + _U16.pack(len(raw)) + raw
    # UUID
    raw = value.bytes if isinstance(value, uuid.UUID) else bytes(value)
    if len(raw) != 16:
        raise EventStreamError(f"header {header.name!r}: UUID must be 16 bytes")
    return out + raw


def encode_headers(headers: list[Header]) -> bytes:
    return b"".join(encode_header(h) for h in headers)


def encode_message(headers: list[Header] | bytes, payload: bytes = b"") -> bytes:
    """Encode a whole message; ``headers`` may be pre-encoded header bytes (hot path)."""
    header_bytes = headers if isinstance(headers, (bytes, bytearray)) else encode_headers(headers)
    total = PRELUDE_LENGTH + len(header_bytes) + len(payload) + TRAILER_LENGTH
    if total > MAX_MESSAGE_SIZE:
        raise EventStreamError(f"message of {total} bytes exceeds {MAX_MESSAGE_SIZE}")
    prelude = _PRELUDE.pack(total, len(header_bytes))
    prelude_crc = _crc32(prelude)
    head = prelude + _U32.pack(prelude_crc) + header_bytes
    crc = _crc32(payload, _crc32(head))
    return b"".join((head, payload, _U32.pack(crc)))


_TYPES = tuple(HeaderType)
_FIXED_WIDTH = {HeaderType.BYTE: 1, HeaderType.INT16: 2, HeaderType.INT32: 4,
                HeaderType.INT64: 8, HeaderType.TIMESTAMP: 8}


def decode_headers(buf: bytes) -> list[Header]:
    """Decode a headers block (hot path: plain int/bytes work, no per-header enum lookups)."""
    headers: list[Header] = []
    append = headers.append
    pos, end = 0, len(buf)
    from_bytes = int.from_bytes
    try:
        while pos < end:
            name_len = buf[pos]
            pos += 1
            if name_len == 0 or pos + name_len >= end:
                raise EventStreamError("header name empty or truncated")
            name = buf[pos:pos + name_len].decode("utf-8")
            pos += name_len
            tag = buf[pos]
            pos += 1
            if tag == 7 or tag == 6:  # STRING, BYTE_BUF
                length = (buf[pos] << 8) | buf[pos + 1]
                pos += 2
                if length > MAX_HEADER_VALUE_LENGTH or pos + length > end:
                    raise EventStreamError(f"header {name!r} value length {length} invalid")
                raw = buf[pos:pos + length]
                pos += length
                value: Any = raw.decode("utf-8") if tag == 7 else raw
            elif tag == 0 or tag == 1:
                value = tag == 0
            elif 2 <= tag <= 5 or tag == 8:
                width = _FIXED_WIDTH[_TYPES[tag]]
                if pos + width > end:
                    raise EventStreamError(f"header {name!r} value truncated")
                value = from_bytes(buf[pos:pos + width], "big", signed=True)
                pos += width
            elif tag == 9:
                if pos + 16 > end:
                    raise EventStreamError("truncated UUID header")
                value = uuid.UUID(bytes=buf[pos:pos + 16])
                pos += 16
            else:
                raise EventStreamError(f"header {name!r} has unknown value type {tag}")
            append(Header(name, value, _TYPES[tag]))
    except (IndexError, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed headers: {exc}") from exc
    return headers


def decode_message(frame: bytes) -> Message:
    """Decode exactly one complete message (CRCs verified)."""
    decoder = FrameDecoder()
    messages = decoder.feed(frame)
    if len(messages) != 1 or decoder.buffered:
        raise EventStreamError("expected exactly one complete message")
    return messages[0]


class FrameDecoder:
    """Incremental decoder: feed it socket reads, get complete messages back."""

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_message_size

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        """Append bytes; return every complete message. Raises EventStreamError on corruption."""
        buf = self._buf
        buf += data
        out: list[Message] = []
        pos = 0
        n = len(buf)
        while n - pos >= PRELUDE_LENGTH:
            total, hlen, pcrc = _PRELUDE_FULL.unpack_from(buf, pos)
            if _crc32(buf[pos:pos + 8]) != pcrc:
                raise EventStreamError("prelude checksum mismatch")
            if total > self._max or total < PRELUDE_LENGTH + TRAILER_LENGTH + hlen:
                raise EventStreamError(f"invalid message length {total} (headers {hlen})")
            if n - pos < total:
                break
            raw = bytes(buf[pos:pos + total])
            pos += total
            if _crc32(memoryview(raw)[:-4]) != _U32.unpack_from(raw, total - 4)[0]:
                raise EventStreamError("message checksum mismatch")
            hend = PRELUDE_LENGTH + hlen
            out.append(Message(decode_headers(raw[PRELUDE_LENGTH:hend]), raw[hend:-4]))
        if pos:
            del buf[:pos]
        return out


# -- event-stream RPC framing (aws-c-event-stream event_stream_rpc.h) -------------------------

PROTOCOL_VERSION = "0.1.0"

APPLICATION_MESSAGE, APPLICATION_ERROR, PING, PING_RESPONSE = 0, 1, 2, 3
CONNECT, CONNECT_ACK, PROTOCOL_ERROR, INTERNAL_ERROR = 4, 5, 6, 7
CONNECTION_ACCEPTED, TERMINATE_STREAM = 0x1, 0x2


def _int32_header_prefix(name: str) -> bytes:
    raw = name.encode()
    return bytes((len(raw),)) + raw + bytes((HeaderType.INT32,))


_MT = _int32_header_prefix(":message-type")
_MF = _int32_header_prefix(":message-flags")
_SID = _int32_header_prefix(":stream-id")
_JSON_CT = encode_headers([Header.string(":content-type", "application/json")])
_model_header_cache: dict[str, bytes] = {}


def _model_header(model: str) -> bytes:
    cached = _model_header_cache.get(model)
    if cached is None:
        cached = _JSON_CT + encode_headers([Header.string("service-model-type", model)])
        _model_header_cache[model] = cached
    return cached


def rpc_headers(message_type: int, flags: int, stream_id: int, model: str | None = None) -> bytes:
    """Pre-encoded RPC headers; JSON content type and model type added when ``model`` is set."""
    out = b"".join((_MT, _I32.pack(message_type), _MF, _I32.pack(flags), _SID,
                    _I32.pack(stream_id)))
    return out + _model_header(model) if model else out


def frame(header_bytes: bytes, payload: bytes) -> bytes:
    """One event-stream message from pre-encoded headers (the hot path; no Header objects)."""
    prelude = _PRELUDE.pack(PRELUDE_LENGTH + len(header_bytes) + len(payload) + TRAILER_LENGTH,
                            len(header_bytes))
    head = prelude + _U32.pack(_crc32(prelude)) + header_bytes
    return b"".join((head, payload, _U32.pack(_crc32(payload, _crc32(head)))))
