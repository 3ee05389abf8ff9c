"""Wire format of the `stream-manager` SDK (1.1.x): framing and CBOR codec.

The connection starts with one connect-version byte from each side. Every message after it is a
frame: a big-endian signed 32-bit length (payload length + 1), one operation byte, then the CBOR
payload, a dict with the SDK's camelCase field names. The SDK's own data classes
(`stream_manager.data`) are the schema, so field names and enum values cannot drift.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Any

import cbor2
from stream_manager.data import (
    AppendMessageRequest,
    AppendMessageResponse,
    ConnectRequest,
    CreateMessageStreamRequest,
    CreateMessageStreamResponse,
    DeleteMessageStreamRequest,
    DeleteMessageStreamResponse,
    DescribeMessageStreamRequest,
    DescribeMessageStreamResponse,
    ListStreamsRequest,
    ListStreamsResponse,
    Operation,
    ReadMessagesRequest,
    ReadMessagesResponse,
    UpdateMessageStreamRequest,
    UpdateMessageStreamResponse,
    VersionInfo,
)

CONNECT_VERSION = 1
PROTOCOL_VERSION: str = VersionInfo.PROTOCOL_VERSION.value
SUPPORTED_PROTOCOL_VERSIONS = [PROTOCOL_VERSION, "1.0.0"]
SERVER_VERSION = "localgg-stream-manager-1.0"
MAX_PACKET_SIZE = 1 << 30

_HEADER = struct.Struct(">iB")

# request operation -> (request class, response operation, response class)
REQUESTS: dict[Operation, tuple[type, Operation, type]] = {
    Operation.CreateMessageStream: (
        CreateMessageStreamRequest,
        Operation.CreateMessageStreamResponse,
        CreateMessageStreamResponse,
    ),
    Operation.UpdateMessageStream: (
        UpdateMessageStreamRequest,
        Operation.UpdateMessageStreamResponse,
        UpdateMessageStreamResponse,
    ),
    Operation.DeleteMessageStream: (
        DeleteMessageStreamRequest,
        Operation.DeleteMessageStreamResponse,
        DeleteMessageStreamResponse,
    ),
    Operation.DescribeMessageStream: (
        DescribeMessageStreamRequest,
        Operation.DescribeMessageStreamResponse,
        DescribeMessageStreamResponse,
    ),
    Operation.AppendMessage: (
        AppendMessageRequest,
        Operation.AppendMessageResponse,
        AppendMessageResponse,
    ),
    Operation.ReadMessages: (
        ReadMessagesRequest,
        Operation.ReadMessagesResponse,
        ReadMessagesResponse,
    ),
    Operation.ListStreams: (ListStreamsRequest, Operation.ListStreamsResponse, ListStreamsResponse),
}


class ProtocolError(Exception):
    """The peer broke the framing; the connection cannot continue."""


@dataclass(frozen=True)
class Frame:
    operation: int
    payload: bytes


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """Read one frame; raises IncompleteReadError at a clean or torn end of stream."""
    header = await reader.readexactly(_HEADER.size)
    length, operation = _HEADER.unpack(header)
    if length < 1 or length > MAX_PACKET_SIZE:
        raise ProtocolError(f"frame length {length} out of range")
    payload = await reader.readexactly(length - 1) if length > 1 else b""
    return Frame(operation, payload)


def encode_frame(operation: Operation | int, payload: bytes) -> bytes:
    """One buffer per frame, so frames written by concurrent tasks never interleave."""
    op = operation.value if isinstance(operation, Operation) else operation
    if len(payload) + 1 > MAX_PACKET_SIZE:
        raise ValueError("frame too large")
    return _HEADER.pack(len(payload) + 1, op) + payload


def encode_message(operation: Operation, message: Any) -> bytes:
    """Frame an SDK data object (anything with as_dict)."""
    return encode_frame(operation, cbor2.dumps(message.as_dict()))


def decode_payload(payload: bytes) -> dict[str, Any]:
    try:
        value = cbor2.loads(payload)
    except Exception as exc:  # cbor2 raises several decoder error types
        raise ProtocolError(f"payload is not CBOR: {exc}") from exc
    if not isinstance(value, dict):
        raise ProtocolError("payload is not a CBOR map")
    return value


def decode_connect(payload: bytes) -> ConnectRequest:
    return ConnectRequest.from_dict(decode_payload(payload))
