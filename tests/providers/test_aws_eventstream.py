"""The AWS event-stream codec against the spec's published vectors, botocore's decoder, and
round trips of every header type."""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, datetime

import pytest
from botocore.eventstream import EventStreamBuffer

from voicebridge.stages.stt.eventstream import (
    MAX_MESSAGE_BYTES,
    EventStreamDecoder,
    EventStreamError,
    HeaderValue,
    Int8,
    Int16,
    Int32,
    Int64,
    decode_message,
    encode_message,
)
from voicebridge.stages.stt.transcribe import audio_event

# The "encoded/positive" and "encoded/negative" vectors of the AWS event-stream test suite.
EMPTY = "000000100000000005c248eb7d98c8ff"
PAYLOAD_NO_HEADERS = "0000001d00000000fd528c5a7b27666f6f273a27626172277dc3653936"
ONE_STR_HEADER = (
    "0000003d0000002007fd83960c636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e"
    "7b27666f6f273a27626172277d8d9c08b1"
)
INT32_HEADER = (
    "0000002d0000001041c424b80a6576656e742d74797065040000a00c7b27666f6f273a27626172277d36f480a0"
)
ALL_HEADERS = (
    "000000cc000000af0fae64ca0a6576656e742d74797065040000a00c0c636f6e74656e742d7479706507001061"
    "70706c69636174696f6e2f6a736f6e0a626f6f6c2066616c73650109626f6f6c207472756500046279746502cf"
    "08627974652062756606001449276d2061206c6974746c6520746561706f74210974696d657374616d70080000"
    "000000845fed05696e74313603002a05696e7436340500000000028757b20475756964090102030405060708090a"
    "0b0c0d0e0f107b27666f6f273a27626172277daba5f10c"
)
CORRUPT_HEADER_LEN = ONE_STR_HEADER.replace("0000002007fd", "0000002107fd", 1)
CORRUPT_LENGTH = "0000003e" + ONE_STR_HEADER[8:]
CORRUPT_HEADERS = ONE_STR_HEADER.replace("7b27666f6f", "7b61666f6f", 1)
CORRUPT_PAYLOAD = "0000001d00000000fd528c5a5b27666f6f273a27626172277dc3653936"
PAYLOAD = b"{'foo':'bar'}"
ALL_HEADER_VALUES: dict[str, HeaderValue] = {
    "event-type": Int32(40972),
    "content-type": "application/json",
    "bool false": False,
    "bool true": True,
    "byte": Int8(-49),
    "byte buf": b"I'm a little teapot!",
    "timestamp": datetime.fromtimestamp(8675309 / 1000, UTC),
    "int16": Int16(42),
    "int64": Int64(42424242),
    "uuid": uuid.UUID(bytes=bytes(range(1, 17))),
}


def test_the_empty_message_vector_and_its_checksums() -> None:
    raw = bytes.fromhex(EMPTY)
    assert encode_message() == raw
    assert int.from_bytes(raw[8:12], "big") == zlib.crc32(raw[:8]) == 96618731
    assert int.from_bytes(raw[12:], "big") == zlib.crc32(raw[:12]) == 2107164927
    message = decode_message(raw)
    assert message.headers == {} and message.payload == b""


@pytest.mark.parametrize(
    ("vector", "headers"),
    [
        (PAYLOAD_NO_HEADERS, {}),
        (ONE_STR_HEADER, {"content-type": "application/json"}),
        (INT32_HEADER, {"event-type": Int32(40972)}),
        (ALL_HEADERS, ALL_HEADER_VALUES),
    ],
    ids=["payload_no_headers", "one_str_header", "int32_header", "all_headers"],
)
def test_positive_vectors_decode_and_encode_byte_for_byte(vector: str, headers: dict) -> None:
    raw = bytes.fromhex(vector)
    message = decode_message(raw)
    assert message.headers == headers
    assert list(message.headers) == list(headers)  # wire order kept
    assert message.payload == PAYLOAD
    assert encode_message(headers, PAYLOAD) == raw
    # Integer widths survive: a decoded int8 is re-encoded as an int8.
    assert encode_message(message.headers, message.payload) == raw


@pytest.mark.parametrize(
    ("vector", "error"),
    [
        (CORRUPT_HEADER_LEN, "prelude checksum"),
        (CORRUPT_LENGTH, "prelude checksum"),
        (CORRUPT_HEADERS, "message checksum"),
        (CORRUPT_PAYLOAD, "message checksum"),
    ],
    ids=["corrupted_header_len", "corrupted_length", "corrupted_headers", "corrupted_payload"],
)
def test_negative_vectors_are_rejected(vector: str, error: str) -> None:
    with pytest.raises(EventStreamError, match=error):
        decode_message(bytes.fromhex(vector))
    decoder = EventStreamDecoder()
    with pytest.raises(EventStreamError, match=error):
        decoder.feed(bytes.fromhex(vector))
    with pytest.raises(EventStreamError):  # a broken stream stays broken
        decoder.feed(bytes.fromhex(EMPTY))


def test_botocore_decodes_what_we_encode() -> None:
    """A second, independent decoder (botocore's) agrees with our encoder."""
    raw = encode_message(ALL_HEADER_VALUES, b"payload bytes")
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    (message,) = list(buffer)
    assert message.payload == b"payload bytes"
    assert message.headers["event-type"] == 40972
    assert message.headers["content-type"] == "application/json"
    assert message.headers["bool false"] is False and message.headers["bool true"] is True
    assert message.headers["byte buf"] == b"I'm a little teapot!"
    assert message.headers["int64"] == 42424242


def test_transcribe_audio_events_have_the_documented_headers() -> None:
    message = decode_message(audio_event(b"\x01\x00\x02\x00"))
    assert message.headers == {
        ":message-type": "event",
        ":event-type": "AudioEvent",
        ":content-type": "application/octet-stream",
    }
    assert message.payload == b"\x01\x00\x02\x00"
    end = decode_message(audio_event(b""))
    assert end.payload == b"" and end.header_str(":event-type") == "AudioEvent"


def test_round_trip_of_every_type_and_edge_values() -> None:
    headers: dict[str, HeaderValue] = {
        "t": True,
        "f": False,
        "i8": Int8(-128),
        "i16": Int16(32767),
        "i32": Int32(-(2**31)),
        "i64": Int64(2**63 - 1),
        "plain int": 5,
        "big int": 2**40,
        "bytes": bytes(range(256)),
        "text": "héllo 世界",
        "when": datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }
    message = decode_message(encode_message(headers, b"x" * 1000))
    assert message.headers == headers
    assert type(message.headers["plain int"]) is Int32
    assert type(message.headers["big int"]) is Int64
    assert message.payload == b"x" * 1000


def test_incremental_decoding_at_every_split_point() -> None:
    stream = (
        encode_message({":event-type": "a"}, "héllo".encode())
        + bytes.fromhex(ALL_HEADERS)
        + encode_message()
    )
    for size in range(1, len(stream) + 1):
        decoder = EventStreamDecoder()
        messages = []
        for start in range(0, len(stream), size):
            messages.extend(decoder.feed(stream[start : start + size]))
        assert [m.payload for m in messages] == ["héllo".encode(), PAYLOAD, b""], size
        assert decoder.pending == 0


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"": "x"}, "1-255 bytes"),
        ({"n" * 256: "x"}, "1-255 bytes"),
        ({"x": Int8(128)}, "int8"),
        ({"x": Int16(-32769)}, "int16"),
        ({"x": 2**63}, "int64"),
        ({"x": "s" * 70000}, "65535"),
        ({"x": datetime(2024, 1, 1)}, "timezone"),
        ({"x": 1.5}, "unsupported"),
    ],
)
def test_bad_headers_are_refused_when_encoding(headers: dict, error: str) -> None:
    with pytest.raises(EventStreamError, match=error):
        encode_message(headers)


def test_size_limits() -> None:
    with pytest.raises(EventStreamError, match="at most"):
        encode_message({}, b"\x00" * MAX_MESSAGE_BYTES)
    with pytest.raises(EventStreamError, match="too few"):
        decode_message(b"\x00" * 8)
    raw = bytes.fromhex(PAYLOAD_NO_HEADERS)
    with pytest.raises(EventStreamError, match="prelude says"):
        decode_message(raw + b"\x00")


def _frame(headers_section: bytes) -> bytes:
    """A message with hand-made headers and valid checksums."""
    total = 16 + len(headers_section)
    prelude = total.to_bytes(4, "big") + len(headers_section).to_bytes(4, "big")
    prelude += zlib.crc32(prelude).to_bytes(4, "big")
    body = prelude + headers_section
    return body + zlib.crc32(body).to_bytes(4, "big")


@pytest.mark.parametrize(
    ("section", "error"),
    [
        (bytes([1]) + b"x" + bytes([7, 0xFF, 0xFF]) + b"abc", "runs past"),
        (bytes([1]) + b"x" + bytes([10]), "unknown value type"),
        (bytes([0, 0]), "empty name"),
        (bytes([1]) + b"x" + bytes([0]) + bytes([1]) + b"x" + bytes([1]), "twice"),
        (bytes([1]) + b"x" + bytes([7, 0, 2]) + b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_headers_are_rejected(section: bytes, error: str) -> None:
    with pytest.raises(EventStreamError, match=error):
        decode_message(_frame(section))
