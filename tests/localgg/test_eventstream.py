"""The event-stream frame codec: byte-exact with aws-c-event-stream, strict on corruption."""

from __future__ import annotations

import struct
import uuid
import zlib

import pytest

from localgg.eventstream import (
    APPLICATION_MESSAGE,
    MAX_MESSAGE_SIZE,
    TERMINATE_STREAM,
    EventStreamError,
    FrameDecoder,
    Header,
    HeaderType,
    decode_message,
    encode_message,
    frame,
    rpc_headers,
)

# Test vectors from awslabs/aws-c-event-stream tests/message_deserializer_test.c
EMPTY_MESSAGE = bytes.fromhex("00000010000000000" "5c248eb7d98c8ff")
FOO_BAR_MESSAGE = bytes.fromhex(
    "0000001d00000000fd528c5a" + b"{'foo':'bar'}".hex() + "c3653936")

ALL_TYPES = [
    Header("true", True, HeaderType.BOOL_TRUE),
    Header("false", False, HeaderType.BOOL_FALSE),
    Header("byte", -5, HeaderType.BYTE),
    Header("int16", -30000, HeaderType.INT16),
    Header(":stream-id", 2**31 - 1, HeaderType.INT32),
    Header("int64", -(2**63), HeaderType.INT64),
    Header("buf", b"\x00\xffbytes", HeaderType.BYTE_BUF),
    Header("service-model-type", "aws.greengrass#PublishToTopicRequest", HeaderType.STRING),
    Header("ts", 1_700_000_000_123, HeaderType.TIMESTAMP),
    Header("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678"), HeaderType.UUID),
]


def test_encodes_the_reference_empty_message_byte_for_byte():
    assert encode_message([], b"") == EMPTY_MESSAGE


def test_encodes_the_reference_payload_message_byte_for_byte():
    assert encode_message([], b"{'foo':'bar'}") == FOO_BAR_MESSAGE


def test_decodes_the_reference_payload_message():
    message = decode_message(FOO_BAR_MESSAGE)
    assert message.headers == [] and message.payload == b"{'foo':'bar'}"


def test_every_header_type_round_trips():
    frame = encode_message(ALL_TYPES, b"payload")
    message = decode_message(frame)
    assert message.headers == ALL_TYPES
    assert message.payload == b"payload"


def test_decoder_reassembles_messages_split_at_every_byte():
    stream = encode_message(ALL_TYPES, b"one") + encode_message([Header.int32("n", 2)], b"two")
    decoder = FrameDecoder()
    messages = []
    for i in range(len(stream)):
        messages += decoder.feed(stream[i:i + 1])
    assert [m.payload for m in messages] == [b"one", b"two"]
    assert decoder.buffered == 0


def test_corrupt_payload_fails_the_message_checksum():
    frame = bytearray(FOO_BAR_MESSAGE)
    frame[15] ^= 0x01
    with pytest.raises(EventStreamError, match="message checksum"):
        FrameDecoder().feed(bytes(frame))


def test_corrupt_length_fails_the_prelude_checksum():
    frame = bytearray(FOO_BAR_MESSAGE)
    frame[3] += 1
    with pytest.raises(EventStreamError, match="prelude checksum"):
        FrameDecoder().feed(bytes(frame))


def test_unknown_header_type_is_rejected():
    good = encode_message([Header.string("a", "b")], b"")
    # a frame with header type tag 42 and valid CRCs, so only the header is wrong
    headers = b"\x01a\x2a"
    prelude = struct.pack(">II", 16 + len(headers), len(headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers
    bad = head + struct.pack(">I", zlib.crc32(head))
    assert decode_message(good).headers == [Header.string("a", "b")]
    with pytest.raises(EventStreamError, match="unknown value type"):
        decode_message(bad)


def test_message_larger_than_the_protocol_limit_is_refused():
    with pytest.raises(EventStreamError, match="exceeds"):
        encode_message([], b"x" * MAX_MESSAGE_SIZE)


def test_int32_header_out_of_range_is_refused():
    with pytest.raises(EventStreamError, match="int32"):
        encode_message([Header.int32(":stream-id", 2**31)], b"")


def test_pre_encoded_rpc_frame_decodes_to_the_headers_the_sdk_looks_for():
    message = decode_message(frame(
        rpc_headers(APPLICATION_MESSAGE, TERMINATE_STREAM, 7, "aws.greengrass#UpdateStateResponse"),
        b"{}"))
    assert message.header_values() == {
        ":message-type": APPLICATION_MESSAGE, ":message-flags": TERMINATE_STREAM,
        ":stream-id": 7, ":content-type": "application/json",
        "service-model-type": "aws.greengrass#UpdateStateResponse"}
    assert all(h.type == HeaderType.INT32 for h in message.headers[:3])
    assert message.payload == b"{}"
