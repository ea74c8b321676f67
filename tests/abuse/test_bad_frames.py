"""A WebSocket text frame that is not UTF-8 closes its socket with 1007 and one bounded info
line; no traceback, and a normal call beside it goes on."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

import pytest

from voicebridge.server.run import RunningService

from .conftest import CapturedLogs, abuse_service, normal_call

TEXT, CONT = 0x1, 0x0


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A client frame (masked, as RFC 6455 requires of clients)."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def raw_socket(service: RunningService) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(service.host, service.port)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET /stream HTTP/1.1\r\nHost: agent\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def close_code(reader: asyncio.StreamReader) -> int:
    """The code of the close frame the server sends (unmasked, short)."""
    data = await asyncio.wait_for(reader.read(), 10)
    assert data[0] == 0x88, data[:20]
    return int(struct.unpack("!H", data[2:4])[0])


BAD_TEXT = {
    "invalid_byte": [frame(TEXT, b'{"event": "\xff\xfe"}')],
    "truncated_sequence": [frame(TEXT, b'{"event": "media", "x": "\xe2\x82"}')],
    "bad_continuation": [frame(TEXT, b'{"event": ', fin=False), frame(CONT, b'"\xc3\x28"}')],
}


@pytest.mark.parametrize("frames", BAD_TEXT.values(), ids=list(BAD_TEXT))
async def test_a_text_frame_that_is_not_utf8_is_a_clean_1007(
    logs: CapturedLogs, frames: list[bytes]
) -> None:
    async with abuse_service() as service:

        async def attack() -> int:
            reader, writer = await raw_socket(service)
            writer.write(b"".join(frames))
            await writer.drain()
            code = await close_code(reader)
            writer.close()
            return code

        code, _ = await asyncio.gather(attack(), normal_call(service))
    assert code == 1007
    [line] = logs.lines("ws_bad_frame")
    assert "reason='invalid_utf8'" in line and "level='info'" in line and len(line) < 600
    logs.assert_no_traceback()


async def test_a_thousand_bad_frames_log_a_few_lines(logs: CapturedLogs) -> None:
    # 100 sockets at once from one address: above the default pending caps, which would refuse
    # most at the handshake (tests/server/test_admission.py); here every one must get its frame.
    # The HTTP edge's cap on handshakes still being read (32 per address) is raised too: on a
    # busy machine a hundred handshakes take longer than the quarter of header_timeout_s after
    # which the oldest is shed with 503 (tests/abuse/test_slow_loris.py tests that).
    pending = {"max_pending_streams": 128, "max_pending_per_peer": 128}
    reading = {"max_incomplete": 256, "max_incomplete_per_peer": 128}
    async with abuse_service(limits=pending, http=reading) as service:

        async def attack() -> None:
            reader, writer = await raw_socket(service)
            writer.write(frame(TEXT, b"\xff" * 100))
            await writer.drain()
            await close_code(reader)
            writer.close()

        for _ in range(10):
            await asyncio.gather(*(attack() for _ in range(100)))
    assert len(logs.lines("ws_bad_frame")) <= 20
    logs.assert_no_traceback()
