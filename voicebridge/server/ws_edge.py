"""The WebSocket edge: uvicorn's sans-I/O WebSocket protocol with two changes for media streams.

* **Reading pauses only when the call falls behind.** uvicorn pauses the socket after every
  message and resumes it when the app takes that message: two ``epoll_ctl`` calls and their
  bookkeeping per message, about a tenth of all CPU at 250 calls, for 50 messages a second per
  call. Here reading pauses once more than ``HIGH_WATER_BYTES`` of messages wait for the app, and
  resumes when the app has taken them all, so a peer that floods still meets TCP back-pressure
  (what waits is bounded by that mark plus one read of the transport) and a call that keeps up
  never pauses at all.
* **A text frame that is not UTF-8 closes its socket (1007) quietly.** uvicorn already closes
  such a socket, but logs the decoding error with a traceback at ``error`` level: any client
  could fill the error log. Here it is closed with the same code and one bounded, rate-limited
  info line.
"""

from __future__ import annotations

from typing import Any

import structlog
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from voicebridge.observe.bounded import bounded
from voicebridge.observe.throttle import LogThrottle

log = structlog.get_logger("voicebridge.server")

INVALID_DATA = 1007
# About 3 s of one call's media events: never reached by a call the app keeps up with.
HIGH_WATER_BYTES = 64 * 1024
_THROTTLE = LogThrottle()


class EdgeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol: reading paused only past a high-water mark, and
    no traceback for a non-UTF-8 text frame."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queued_bytes = 0  # what waits in ``queue`` for the app, roughly (see receive)

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
