"""A call through the real service on loopback that waits, between turns, for a go-ahead.

For tests and tools that look at the service from outside while a call is live (a browser on
the call pages): the service and a simulated caller run on an event loop in a thread of their
own; after each agent reply the caller stops, says so (``reached``) and speaks its next line
only once told (``go``). The call runs on a virtual clock in lockstep, so while it waits nothing
moves and what the outside sees is exactly that turn.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from voicebridge.clock import StreamClock
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.config.service_settings import ServiceSettings
from voicebridge.frames import PCM
from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import running_service
from voicebridge.sim.answer import answer_call
from voicebridge.sim.caller import Keypress, PlivoCaller
from voicebridge.sim.lockstep import SessionWatch


@dataclass
class _Step:
    reached: threading.Event = field(default_factory=threading.Event)
    go: asyncio.Event | None = None


class GatedCall:
    """``start()`` serves ``spec`` and places one call; after the greeting the caller speaks
    ``lines[0]`` at once, then each later line after ``release(i)`` (i = 1, 2, ...), and hangs
    up after ``release(len(lines))``. ``wait_reached(i)`` blocks until the agent's reply before
    line ``i`` (or the hang-up) has played. ``stop()`` ends everything."""

    def __init__(
        self,
        settings: ServiceSettings,
        spec: PipelineSpec,
        lines: Sequence[PCM | Keypress],
        fmt: StreamFormat,
        timeout_s: float = 60.0,
    ) -> None:
        self.settings = settings.model_copy(update={"host": "127.0.0.1", "port": 0})
        self.spec = spec
        self.lines = list(lines)
        self.fmt = fmt
        self.timeout_s = timeout_s
        self.http_base = ""
        self.app: Any = None
        self.error: BaseException | None = None
        self.finished = threading.Event()  # the call is over and its files are written
        self._steps = [_Step() for _ in self.lines]
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="gated-call", daemon=True)

    def start(self) -> GatedCall:
        self._thread.start()
        if not self._ready.wait(self.timeout_s) or self.error is not None:
            raise RuntimeError(f"the service did not start: {self.error!r}")
        return self

    def wait_reached(self, index: int) -> None:
        if not self._steps[index - 1].reached.wait(self.timeout_s):
            raise TimeoutError(f"the call did not reach line {index}: {self.error!r}")

    def release(self, index: int) -> None:
        step, loop = self._steps[index - 1], self._loop
        if loop is not None and step.go is not None:
            loop.call_soon_threadsafe(step.go.set)

    def wait_finished(self) -> None:
        if not self.finished.wait(self.timeout_s):
            raise TimeoutError(f"the call did not finish: {self.error!r}")

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            for i in range(1, len(self.lines) + 1):
                self.release(i)
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(self.timeout_s)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the waiting thread
            self.error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for step in self._steps:
            step.go = asyncio.Event()
        watch = SessionWatch()
        async with running_service(
            self.settings, self.spec, clock_factory=StreamClock, on_session=watch
        ) as service:
            self.app, self.http_base = service.app, service.http_base
            self._ready.set()
            answered = await answer_call(f"{service.http_base}/answer")
            caller = PlivoCaller(
                answered.url,
                self.fmt,
                call_id=answered.call_uuid,
                speed=float("inf"),
                probe=watch.lockstep,
            )

            async def more(index: int) -> PCM | Keypress | None:
                step = self._steps[index - 1]
                step.reached.set()
                assert step.go is not None
                await step.go.wait()
                return self.lines[index] if index < len(self.lines) else None

            await caller.run_turns(self.lines[:1], reply_timeout_s=self.timeout_s, more=more)
            session = watch.session
            if session is not None:
                await asyncio.wait_for(session.ended.wait(), self.timeout_s)
            self.finished.set()
            await self._stop.wait()
