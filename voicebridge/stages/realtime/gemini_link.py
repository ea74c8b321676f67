"""One Gemini Live session, on the official ``google-genai`` SDK (``client.aio.live.connect``).

``open`` connects and sends the setup (the SDK waits for ``setupComplete``, so a refused key or
model fails here); a re-established session is first given the heard history as its initial
``client_content``. Messages go out in order through one writer task (``send_*`` never wait, caller
audio is bounded: :mod:`~voicebridge.stages.realtime.session_link`). ``recv`` returns the SDK's
``LiveServerMessage``s one by one. Every failure is a ``ProviderError`` (``live_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from google import genai
from google.genai import types

from voicebridge.clock import Clock, wait_for
from voicebridge.runtime.workers import run_blocking
from voicebridge.stages.realtime.gemini_session import live_error
from voicebridge.stages.realtime.session_link import SessionLink

_POOL = "gemini-clients"  # a client builds SSL contexts (certificates): not on the event loop

Send = Callable[[Any], Coroutine[Any, Any, None]]


def make_client(key: str, base_url: str | None) -> genai.Client:
    options = types.HttpOptions(base_url=base_url) if base_url else None
    return genai.Client(api_key=key, http_options=options)


async def build_client(key: str, base_url: str | None) -> genai.Client:
    return await run_blocking(_POOL, make_client, key, base_url)


class LiveLink(SessionLink):
    """One session's socket: open it, send in order, receive messages."""

    def __init__(self, stage: str, clock: Clock, audio_mime: str) -> None:
        super().__init__(stage)
        self.clock = clock
        self.audio_mime = audio_mime
        self._manager: Any = None
        self._session: Any = None
        self._receiving: Any = None

    async def open(
        self,
        client: genai.Client,
        model: str,
        config: dict[str, Any],
        timeout_s: float,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        try:
            live_config = types.LiveConnectConfig.model_validate(config)
            self._manager = client.aio.live.connect(model=model, config=live_config)
            self.setup_until = self.clock.now() + timeout_s
            self._session = await wait_for(self.clock, self._manager.__aenter__(), timeout_s)
            self.setup_until = None
            self.sent += 1  # the setup
            self.received += 1  # setupComplete, read by the SDK
            if history is not None:  # the heard history first, answered by nothing
                await self._session.send_client_content(turns=history, turn_complete=True)
                self.sent += 1
        except BaseException as exc:
            self.setup_until = None
            await self.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise live_error(self.stage, exc) from exc
        self._start_writer()

    # --- sending ------------------------------------------------------------------------------
    def send(self, kind: str, payload: Any = None) -> None:
        """``activity_start``, ``activity_end``, ``content`` (turns, turn_complete) or
        ``tool_response`` (function responses)."""
        self._queue_message((kind, payload))

    async def _deliver(self, message: Any, audio: bool) -> None:
        session = self._session
        if audio:  # PCM bytes (send_audio)
            blob = types.Blob(data=message, mime_type=self.audio_mime)
            await session.send_realtime_input(audio=blob)
            return
        kind, payload = message
        if kind == "activity_start":
            await session.send_realtime_input(activity_start={})
        elif kind == "activity_end":
            await session.send_realtime_input(activity_end={})
        elif kind == "content":
            turns, complete = payload
            await session.send_client_content(turns=turns, turn_complete=complete)
        elif kind == "tool_response":
            await session.send_tool_response(function_responses=payload)

    # --- receiving ----------------------------------------------------------------------------
    async def recv(self) -> Any:
        """The next ``LiveServerMessage``; ProviderError once the socket is gone."""
        session = self._session
        if session is None:
            raise live_error(self.stage, OSError("not connected"))
        while True:
            if self._receiving is None:
                self._receiving = session.receive()
            try:
                message = await self._receiving.__anext__()
            except StopAsyncIteration:
                self._receiving = None  # one model turn is over: the next one follows
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise live_error(self.stage, exc) from exc
            self.received += 1
            return message

    async def close(self) -> None:
        await self._stop_writer()
        receiving, self._receiving = self._receiving, None
        if receiving is not None:
            with contextlib.suppress(BaseException):
                await receiving.aclose()
        manager, self._manager, self._session = self._manager, None, None
        if manager is not None:
            with contextlib.suppress(BaseException):
                await manager.__aexit__(None, None, None)
