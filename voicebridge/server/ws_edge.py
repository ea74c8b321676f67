"""The WebSocket edge: a text frame that is not UTF-8 closes its socket (1007) quietly.

uvicorn's sans-I/O WebSocket protocol already closes such a socket, but logs the decoding error
with a traceback at ``error`` level: any client could fill the error log. Here the frame is
checked first (a cheap ASCII test: Plivo's JSON is ASCII), and a bad one is closed with the same
code and one bounded, rate-limited info line.
"""

from __future__ import annotations

import structlog
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from voicebridge.observe.bounded import bounded
from voicebridge.observe.throttle import LogThrottle

log = structlog.get_logger("voicebridge.server")

INVALID_DATA = 1007
_THROTTLE = LogThrottle()


class EdgeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol without a traceback for a non-UTF-8 text frame."""

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent and self.frames:
            data = b"".join(self.frames)
            if not data.isascii():
                try:
                    data.decode()
                except UnicodeDecodeError as exc:
                    self.frames = []
                    self._refuse_text(exc)
                    return
        super().send_receive_event_to_app()

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
