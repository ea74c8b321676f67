"""The WebSocket edge's own reading of whole frames (``ws_edge``) against websockets' parser.

Random sequences of client frames (text, binary, long lengths, pings, pongs, fragments, reserved
bits, unmasked, over the size limit, invalid UTF-8, a close), cut into random reads, go to two
edge protocols on fake transports: one reading frames itself, one with websockets reading them
all (as before). Both must hand the app the same messages and write the same bytes back, and
close alike. When websockets fails a connection, uvicorn drops the messages it parsed from the
same read as the bad frame; the edge has handed those on already, and may fail the connection on
one of them first (text that is not UTF-8).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.frames import Frame, Opcode

from voicebridge.server.ws_edge import EdgeWebSocketProtocol

from .strategies import FUZZ

MAX_SIZE = 20_000
REQUEST = (
    b"GET /stream HTTP/1.1\r\nHost: agent\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + base64.b64encode(b"0123456789abcdef") + b"\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)


class Peer:
    """One server side of a connection: the edge protocol on a fake transport, and an app that
    accepts and then does not read (what arrives stays in the protocol's queue for the test)."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.state = ServerState()
        config = Config(
            self.app,
            interface="asgi3",
            ws_max_size=MAX_SIZE,
            ws_ping_interval=None,
            log_config=None,
        )
        config.load()
        self.protocol = EdgeWebSocketProtocol(config, self.state, {})
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await self.done.wait()

    async def open(self, first: bytes = REQUEST) -> None:
        self.protocol.data_received(first)
        for _ in range(100):  # the app's task accepts within a few loop turns
            if self.protocol.handshake_complete:
                return
            await asyncio.sleep(0)
        raise AssertionError("the app never accepted")

    async def close(self) -> None:
        self.done.set()
        await asyncio.gather(*self.state.tasks)
        self.protocol.connection_lost(None)


async def connected(framing: bool) -> Peer:
    peer = Peer()
    await peer.open()
    if not framing:
        peer.protocol._websockets_only = True  # the reference: websockets reads every frame
    return peer


def frame_bytes(kind: str, payload: bytes) -> bytes:
    if kind == "text":
        return Frame(Opcode.TEXT, payload).serialize(mask=True)
    if kind == "binary":
        return Frame(Opcode.BINARY, payload).serialize(mask=True)
    if kind == "ping":
        return Frame(Opcode.PING, payload[:125]).serialize(mask=True)
    if kind == "pong":
        return Frame(Opcode.PONG, payload[:125]).serialize(mask=True)
    if kind == "fragments":
        half = len(payload) // 2
        first = Frame(Opcode.TEXT, payload[:half], fin=False).serialize(mask=True)
        return first + Frame(Opcode.CONT, payload[half:]).serialize(mask=True)
    if kind == "reserved":
        data = bytearray(Frame(Opcode.TEXT, payload).serialize(mask=True))
        data[0] |= 0x20  # RSV2, which no extension here defines
        return bytes(data)
    if kind == "unmasked":
        return Frame(Opcode.TEXT, payload).serialize(mask=False)
    if kind == "close":
        return Frame(Opcode.CLOSE, b"\x03\xe8bye").serialize(mask=True)
    raise AssertionError(kind)


text = st.text(max_size=300).map(str.encode)
long_text = st.integers(126, 70_000).map(lambda n: b"x" * n)  # 16- and 64-bit lengths, limit
bad_utf8 = st.sampled_from([b"\xff\xfe", b'{"event": "\xe2\x82"}', b"ok \xc3\x28"])
frames = st.lists(
    st.one_of(
        st.tuples(st.just("text"), st.one_of(text, long_text, bad_utf8)),
        st.tuples(st.sampled_from(["binary", "ping", "pong"]), st.binary(max_size=300)),
        st.tuples(st.sampled_from(["fragments", "reserved", "unmasked", "close"]), text),
    ),
    max_size=8,
)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]


def drained(protocol: EdgeWebSocketProtocol) -> list[Any]:
    messages = []
    while not protocol.queue.empty():
        messages.append(protocol.queue.get_nowait())
    return messages


@FUZZ
@given(frames=frames, points=st.lists(st.integers(0, 10**6), max_size=12))
def test_own_framing_hands_the_app_what_websockets_would(
    frames: list[tuple[str, bytes]], points: list[int]
) -> None:
    async def run() -> None:
        fast_peer, slow_peer = await connected(framing=True), await connected(framing=False)
        fast, fast_wire = fast_peer.protocol, fast_peer.transport
        slow, slow_wire = slow_peer.protocol, slow_peer.transport
        start = len(fast_wire.written), len(slow_wire.written)
        assert start[0] == start[1]
        data = b"".join(frame_bytes(kind, payload) for kind, payload in frames)
        for piece in cut(data, points):
            if not fast_wire.closed:
                fast.data_received(piece)
            if not slow_wire.closed:
                slow.data_received(piece)
        got, want = drained(fast), drained(slow)
        failed = bool(want) and want[-1]["type"] == "websocket.disconnect"
        if not failed:
            assert got == want
            assert fast_wire.written[start[0] :] == slow_wire.written[start[1] :]
        else:
            # websockets failed the connection. uvicorn drops what it had parsed from the same
            # read as the bad frame; read here, those frames reach the app first, and one of
            # them (text that is not UTF-8) may fail the connection before the bad frame does.
            assert got[-1]["type"] == "websocket.disconnect"
            assert got[-1]["code"] in (1002, 1007, 1009)
            received = [m for m in got[:-1] if m["type"] == "websocket.receive"]
            assert received[: len(want) - 1] == want[:-1]
        assert fast_wire.closed == slow_wire.closed
        await fast_peer.close()
        await slow_peer.close()

    asyncio.run(run())


async def test_the_usual_frames_are_read_without_websockets() -> None:
    peer = await connected(framing=True)
    protocol = peer.protocol
    media = (
        b'{"event": "media", "media": {"payload": "' + base64.b64encode(os.urandom(160)) + b'"}}'
    )
    protocol.data_received(frame_bytes("text", media) * 3)
    assert protocol.framing
    assert [m["text"] for m in drained(protocol)] == [media.decode()] * 3
    await peer.close()


async def test_bytes_before_the_handshake_answer_leave_it_to_websockets() -> None:
    peer = Peer()
    await peer.open(REQUEST + frame_bytes("text", b"too early"))
    protocol = peer.protocol
    protocol.data_received(frame_bytes("text", b"later"))
    assert not protocol.framing
    texts = [m.get("text") for m in drained(protocol) if m["type"] == "websocket.receive"]
    assert texts == ["too early", "later"]
    await peer.close()
