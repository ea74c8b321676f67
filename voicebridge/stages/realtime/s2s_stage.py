"""What the speech-to-speech stages (``openai_realtime``, ``gemini_live``) do the same way.

Each holds one provider session (its ``link``) read by one reader task. The reader hands every
message to the stage (``_on_message``); when the socket drops it tells the stage (``_lost``) and
re-establishes a session (``_connect(replay=True)``) through the provider guard, waiting on the
call's clock between failed tries (for the breaker's cool-down once it is open). A provider
failure is reported once, with the next frame, as a ``ProviderError`` (the call core answers
with its fallback line); one reported while no session could be restored is ``voice_lost``: the
model is the call's only voice, so the call cannot say a goodbye and hangs up if it gives up.

The session's connect deadline and the waits between its tries run on ``net_clock``: the wall
clock while the stage starts, the call's clock after. A call's clock may stand still until its
pipeline has started (a ``StreamClock``, as in the simulator's fast mode and the test harness,
moves with the caller's audio, which the session reads only once start-up is over), so a wait
on it during start-up would never end.

The lines the call itself must say (``AgentText``: greeting, fallback, reprompts, goodbyes)
queue here until the model is free to read one out (``_next_line``); keypad digits are gathered
until ``dtmf_wait_s`` passes or ``#``, then given to the model (``_keypad_entered``). How a
provider asks for a reply, says a line, and ends a turn stays in its stage.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from voicebridge.clock import Clock, MonotonicClock
from voicebridge.frames import AgentText, CallEnded, CallStarted, Dtmf, Frame
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.resilience import BreakerState, ProviderGuard
from voicebridge.runtime.stage import Stage, StageParams
from voicebridge.stages.realtime.session_link import SessionLink

L = TypeVar("L", bound=SessionLink)
MAX_WAITING_LINES = 3  # lines the call asked to say while the model is busy or restored


@dataclass(frozen=True)
class Line:
    """Something the call itself wants said, as agent turn ``turn``."""

    turn: int
    text: str


class SpeechToSpeechStage(Stage, Generic[L]):
    """A stage around one realtime model session: reader, reconnects, the call's own lines."""

    guard: ProviderGuard  # set by the stage: its provider's retries, backoff and breaker

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._link: L | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._error: ProviderError | None = None  # reported with the next frame
        self._lines: deque[Line] = deque()  # waiting for the model to be free
        self._saying: int | None = None  # the newest line being read out, as its turn
        self._parts: dict[int, list[str]] = {}  # the call's AgentText pieces, per turn
        self._digits = ""
        self._dtmf_task: asyncio.Task[Any] | None = None
        self.net_clock: Clock = MonotonicClock()  # the call's clock once the reader runs
        self.sessions = 0  # sessions opened for this call (1 + reconnects)
        self.tries = 0  # sessions tried (a lockstep driver knows one is on its way)
        self._opening: L | None = None  # the link of the try under way
        self.handled = 0  # messages of the current session handled (tests wait on it)

    # --- what each provider's stage does its own way ----------------------------------------
    async def _connect(self, *, replay: bool) -> None:
        """Open a session through the guard; with ``replay``, give it the heard history."""
        raise NotImplementedError

    async def _on_message(self, message: Any) -> None:
        """One message from the model."""
        raise NotImplementedError

    async def _lost(self, link: L, error: ProviderError) -> None:
        """The socket dropped: end what it was doing and forget it (``_link`` = None)."""
        raise NotImplementedError

    def _next_line(self) -> None:
        """Ask the model for the next waiting line (or reply), if it is free."""
        raise NotImplementedError

    async def _close_turn(self, turn: int) -> None:
        """A turn that will say nothing still ends, so the call does not wait for it."""
        raise NotImplementedError

    async def _keypad_entered(self, text: str, link: L) -> None:
        """The caller keyed ``text`` (``[keypad: 123]``): give it to the model."""
        raise NotImplementedError

    def _message_kind(self, message: Any) -> str:
        """What a message that failed to be handled was, for the log."""
        return type(message).__name__[:64]

    # --- session --------------------------------------------------------------------------
    @property
    def link(self) -> L | None:
        """The current session's socket (None while it is being restored)."""
        return self._link

    @property
    def reconnect_waiting(self) -> bool:
        """No session, and the reader is asleep on the call's clock until its next try (the
        backoff or the breaker's cool-down): a lockstep driver may move time on."""
        sleeping: set[Any] = getattr(self.ctx.clock, "sleeping", set())
        return self._link is None and self._reader is not None and self._reader in sleeping

    @property
    def awaiting_setup(self) -> bool:
        """A try is waiting for the provider to set its session up, and its deadline on the
        call's clock has not passed: a lockstep driver whose fake holds the set-up may move
        time on (up to the deadline, where the try gives up)."""
        link = self._opening
        until = link.setup_until if link is not None else None
        return until is not None and self.ctx.clock.now() < until

    def _trying(self, link: L) -> L:
        """``link`` is this stage's newest try at a session."""
        self.tries += 1
        self._opening = link
        return link

    def _start_reader(self) -> None:
        self.net_clock = self.ctx.clock
        self._reader = asyncio.get_running_loop().create_task(
            self._read(), name=f"{self.name}-reader"
        )

    async def stop(self) -> None:
        self._closing = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    async def _read(self) -> None:
        while not self._closing:
            link = self._link
            if link is None:
                await self._restore()
                continue
            try:
                message = await link.recv()
            except ProviderError as error:
                if self._closing or link is not self._link:
                    continue
                await self._lost(link, error)
                continue
            try:
                await self._on_message(message)
            except asyncio.CancelledError:
                raise
            except ProviderError as error:
                self._fail(error)
            except Exception as exc:  # one unreadable message must not end the conversation
                kind = self._message_kind(message)
                self.log.error("s2s_event_failed", event=kind, error=repr(exc)[:300])
            finally:
                self.handled += 1

    def _fail(self, error: ProviderError) -> None:
        """Reported (once until the next frame) as a provider failure: the call speaks its
        fallback, or gives up when the provider stays down."""
        if self.guard.breaker.state is BreakerState.OPEN:
            error.circuit_open = True
        if self._error is None:
            self._error = error

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    async def _restore(self) -> None:
        """A new session, with the heard history as its context; on failure, try again later."""
        try:
            await self._connect(replay=True)
        except ProviderError as error:
            error.voice_lost = True  # nothing can be said until a session is back
            self._fail(error)
            wait = max(
                self.params.resilience.backoff_max_s,
                self.guard.breaker.retry_in(self.guard.registry.clock.now()),
            )
            self.log.warning("s2s_restore_failed", kind=error.kind, retry_in_s=round(wait, 2))
            await self.ctx.clock.sleep(max(wait, 0.5))
            return
        self.log.info("s2s_session_restored", session=self.sessions)
        self._next_line()

    # --- the call's own frames ------------------------------------------------------------
    def _call_event(self, frame: Frame) -> None:
        """The call started (the greeting), a key was pressed, or the call is ending."""
        if isinstance(frame, CallStarted):
            if self.params.greeting.strip() and not frame.resumed:
                self._say(Line(self.ctx.begin_turn(), self.params.greeting))
        elif isinstance(frame, Dtmf) and self.params.dtmf:
            self._keypad(frame.digit)
        elif isinstance(frame, CallEnded):
            self._closing = True

    def _call_says(self, frame: AgentText) -> None:
        """A line of the call's own (fallback, reprompt, goodbye): the model reads it out."""
        parts = self._parts.setdefault(frame.turn, [])
        if frame.text.strip():
            parts.append(frame.text.strip())
        if not frame.last:
            return
        text = " ".join(self._parts.pop(frame.turn, []))
        if text:
            self._say(Line(frame.turn, text))
        else:
            self.spawn(self._close_turn(frame.turn), name=f"{self.name}-close")

    def _say(self, line: Line) -> None:
        """Have the model read ``line`` out, as soon as no other reply is in progress."""
        self._lines.append(line)
        self._saying = line.turn
        while len(self._lines) > MAX_WAITING_LINES:
            dropped = self._lines.popleft()
            self.spawn(self._close_turn(dropped.turn), name=f"{self.name}-close")
        self._next_line()

    def _pop_line(self) -> Line | None:
        """The oldest waiting line that is still to be said (stale ones are dropped)."""
        while self._lines:
            line = self._lines.popleft()
            if not self.ctx.is_stale(line.turn):
                return line
        return None

    def _drop_lines(self, stale_through: int) -> None:
        """Barge-in: the lines of turns up to ``stale_through`` are not said."""
        self._lines = deque(line for line in self._lines if line.turn > stale_through)
        if self._saying is not None and self._saying <= stale_through:
            self._saying = None

    def _keypad(self, digit: str) -> None:
        self._digits += digit
        if self._dtmf_task is not None:
            self._dtmf_task.cancel()
        wait = 0.0 if digit == "#" else self.params.dtmf_wait_s
        self._dtmf_task = self.spawn(self._keypad_done(wait), name=f"{self.name}-dtmf")

    async def _keypad_done(self, wait_s: float) -> None:
        if wait_s:
            await self.ctx.clock.sleep(wait_s)
        digits, self._digits = self._digits, ""
        link = self._link
        if digits and link is not None:
            await self._keypad_entered(f"[keypad: {digits}]", link)
