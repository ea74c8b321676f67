"""What a speech-to-speech session's socket does the same whatever the provider: messages go out
in order through one writer task.

Queueing never waits (a barge-in hook cannot await). Caller audio is bounded there: when the
socket falls ``max_audio`` chunks behind, the oldest chunk still queued goes, so a stalled socket
drops old audio instead of growing without end. A provider's link (``gemini_link``,
``openai_link``) says how one message is written (``_deliver``) and how the socket opens, reads
and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

MAX_QUEUED_AUDIO = 250  # 5 s of 20 ms chunks; beyond that the oldest caller audio goes


class SessionLink:
    """The ordered writer of one session's socket; ``sent`` counts what was written."""

    def __init__(self, stage: str, max_audio: int = MAX_QUEUED_AUDIO) -> None:
        self.stage = stage
        self.max_audio = max_audio
        self._queue: deque[tuple[bool, Any]] = deque()  # (caller audio?, message)
        self._audio_queued = 0
        self._ready = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._sending = False
        self.closed = False
        self.dropped_audio = 0
        self.sent = 0  # messages written to the socket
        self.received = 0  # messages read from it
        # While ``open`` waits for the provider: when (on the link's clock) that wait gives up.
        # A lockstep test driver may run call time on until then while its fake holds the set-up.
        self.setup_until: float | None = None

    async def _deliver(self, message: Any, audio: bool) -> None:
        """Write one queued message to the socket."""
        raise NotImplementedError

    async def recv(self) -> Any:
        """The next message from the model; ProviderError once the socket is gone."""
        raise NotImplementedError

    async def close(self) -> None:
        """Stop writing and close the socket."""
        raise NotImplementedError

    def _queue_message(self, message: Any) -> None:
        self._queue.append((False, message))
        self._ready.set()

    def send_audio(self, message: Any) -> None:
        """Queue a chunk of caller audio (as the provider's link writes it); the oldest queued
        goes when the socket is too far behind."""
        if self._audio_queued >= self.max_audio:
            for index, (audio, _) in enumerate(self._queue):
                if audio:
                    del self._queue[index]
                    self._audio_queued -= 1
                    self.dropped_audio += 1
                    break
        self._queue.append((True, message))
        self._audio_queued += 1
        self._ready.set()

    def _start_writer(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(
            self._write(), name=f"{self.stage}-writer"
        )

    async def _write(self) -> None:
        queue = self._queue
        while not self.closed:
            if not queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            audio, message = queue.popleft()
            self._sending = True
            try:
                if audio:
                    self._audio_queued -= 1
                await self._deliver(message, audio)
                self.sent += 1
            except Exception:
                return  # the socket is gone: the reader sees it and says so
            finally:
                self._sending = False

    @property
    def idle(self) -> bool:
        """Everything queued has been written."""
        return not self._queue and not self._sending

    async def _stop_writer(self) -> None:
        self.closed = True
        self._ready.set()
        writer, self._writer = self._writer, None
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
