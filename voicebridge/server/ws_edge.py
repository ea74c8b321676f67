"""The WebSocket edge: uvicorn's sans-I/O WebSocket protocol with three changes for media streams.

* **Reading pauses only when the call falls behind.** uvicorn pauses the socket after every
  message and resumes it when the app takes that message: two ``epoll_ctl`` calls and their
  bookkeeping per message (6 % of the server's CPU at 100 calls), for 50 messages a second per
  call. Here reading pauses once more than ``HIGH_WATER_BYTES`` of messages wait for the app, and
  resumes when the app has taken them all, so a peer that floods still meets TCP back-pressure
  (what waits is bounded by that mark plus one read of the transport) and a call that keeps up
  never pauses at all.
* **The usual frame is read here, not by websockets' general parser.** After the handshake, a
  whole, unfragmented, masked text or binary frame within the size limit (every media event) is
  unmasked (websockets' C ``apply_mask``) and handed on directly: websockets' parser, a chain of
  Python generators, cost about a third of the socket path. Only whole frames are ever passed
  to websockets (a control frame, with its pong or close), so its parser always starts at a
  frame boundary; anything else (a fragment, a continuation, reserved bits, a frame over the
  limit or unmasked, data before our handshake answer, an extension) hands the rest of the
  connection to websockets, which judges it as before (good frames read before a bad one in
  the same read now reach the app; uvicorn dropped them).
* **A text frame that is not UTF-8 closes its socket (1007) quietly.** uvicorn already closes
  such a socket, but logs the decoding error with a traceback at ``error`` level: any client
  could fill the error log. Here it is closed with the same code and one bounded, rate-limited
  info line.
"""

from __future__ import annotations

from typing import Any

import structlog
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import apply_mask
from websockets.protocol import State

from voicebridge.observe.bounded import bounded
from voicebridge.observe.throttle import LogThrottle

log = structlog.get_logger("voicebridge.server")

INVALID_DATA = 1007
# About 3 s of one call's media events: never reached by a call the app keeps up with.
HIGH_WATER_BYTES = 64 * 1024
_THROTTLE = LogThrottle()
_TEXT, _BINARY, _CLOSE = 0x1, 0x2, 0x8
_END_OF_REQUEST = b"\r\n\r\n"


class EdgeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol: reading paused only past a high-water mark, the
    usual frames read here, and no traceback for a non-UTF-8 text frame."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queued_bytes = 0  # what waits in ``queue`` for the app, roughly (see receive)
        self.framing = False  # whole frames are read here (see _frames)
        self._websockets_only = False  # bytes before our answer, or handed over: never framing
        self._request_tail = b""  # the last bytes of the request so far, to find its end
        self._partial = b""  # the start of a frame not yet whole
        limit = self.config.ws_max_size
        self._max_payload = limit if limit is not None else 1 << 62

    # --- reading frames -------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.framing:
            self._frames(data)
            return
        if self.handshake_complete:
            if self._can_frame():  # the first bytes after our handshake answer
                self.framing = True
                self._frames(data)
                return
        elif self.handshake_initiated:
            self._websockets_only = True  # frames before our answer: not a case to optimise
        else:
            seen = self._request_tail + data
            end = seen.find(_END_OF_REQUEST)
            if end >= 0 and end + len(_END_OF_REQUEST) < len(seen):
                self._websockets_only = True  # bytes after the request in the same read
            self._request_tail = seen[-3:]
        super().data_received(data)

    def _can_frame(self) -> bool:
        conn = self.conn
        return (
            not self._websockets_only
            and not self.close_sent
            and conn.state is State.OPEN
            and not conn.extensions
            and not conn.reader.buffer
            and conn.parser_exc is None
        )

    def _frames(self, data: bytes) -> None:
        """Take every whole frame in ``data`` (after what was left of the last read)."""
        if self._partial:
            data = self._partial + data
            self._partial = b""
        pos, end = 0, len(data)
        while end - pos >= 2:
            head, size = data[pos], data[pos + 1]
            length = size & 0x7F
            start = pos + 2
            if length == 126:
                if end - start < 2:
                    self._partial = data[pos:]
                    return
                length = int.from_bytes(data[start : start + 2], "big")
                start += 2
            opcode = head & 0x0F
            simple = head & 0x70 == 0 and size & 0x80 and length != 127 and head & 0x80
            if not simple or length > self._max_payload or opcode not in (_TEXT, _BINARY, 8, 9, 10):
                break  # websockets judges it (and all that follows)
            frame_end = start + 4 + length
            if frame_end > end:
                self._partial = data[pos:]  # bounded: the length was checked above
                return
            if opcode <= _BINARY:
                payload = apply_mask(data[start + 4 : frame_end], data[start : start + 4])
                self.curr_msg_data_type = "text" if opcode == _TEXT else "bytes"
                self.frames = [payload]
                self.send_receive_event_to_app()
            else:  # a control frame, whole: websockets answers it (pong, close)
                super().data_received(data[pos:frame_end])
            pos = frame_end
            if self.close_sent or self.conn.state is not State.OPEN or opcode == _CLOSE:
                break
        else:
            self._partial = data[pos:]
            return
        self.framing = False  # from here on, websockets reads the connection
        self._websockets_only = True
        if pos < end:
            super().data_received(data[pos:])

    def send_receive_event_to_app(self) -> None:
        frames = self.frames
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        self.frames = []
        if self.close_sent:  # past our close: dropped, reading goes on until the peer's reply
            return
        if self.curr_msg_data_type == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError as exc:
                self._refuse_text(exc)
                return
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
        self.queued_bytes += len(data)
        if self.queued_bytes > HIGH_WATER_BYTES and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> Any:
        message = await self.queue.get()
        if self.queue.empty():
            self.queued_bytes = 0
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
        elif message["type"] == "websocket.receive":
            body = message.get("text") or message.get("bytes") or b""
            self.queued_bytes = max(0, self.queued_bytes - len(body))
        return message

    def _refuse_text(self, exc: UnicodeDecodeError) -> None:
        _THROTTLE.log(
            log,
            "ws_bad_frame",
            reason="invalid_utf8",
            detail=bounded(str(exc), 120),
            client=bounded(self.client[0] if self.client else None, 64),
            path=bounded(self.scope["path"] if self.handshake_initiated else None, 100),
        )
        self.conn.send_close(INVALID_DATA, "text frame is not valid UTF-8")
        self.handle_parser_exception()
