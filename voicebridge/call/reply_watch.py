"""Bounded silence: what the session does while a reply is late or its provider is failing.

The watch arms when the caller's turn ends (a final transcript) and disarms when the first
audio of the reply to it is sent. In between, on the session's housekeeping tick:

* after ``filler_after_ms`` of silence it speaks a filler ("One moment."), up to
  ``max_fillers`` per caller turn, each spaced by the same silence after the previous one
  played, so the caller never waits longer than that in silence;
* at ``reply_timeout_ms`` it gives the reply up: the late work is cancelled (as a barge-in
  would) so it can never arrive after the apology, and ``fallback_text`` is spoken.

It also decides what a provider failure becomes: the fallback line once per caller turn, or,
when the provider stays down (``give_up_after`` failed turns in a row, or its circuit breaker is
open), ``goodbye_text`` and a clean hang-up.

Fillers, fallbacks and goodbyes go straight to the speaker stage (``say(direct=True)``): the
dialogue stage may be the one that is stuck, and frames pushed at the head would queue behind
it. Fillers are spoken as their own turns and left out of the dialogue history (a model that
saw them would learn to say them); fallbacks and goodbyes are kept, as the caller heard them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voicebridge.frames import AgentText, Hangup
from voicebridge.runtime.providers import ProviderError

if TYPE_CHECKING:
    from voicebridge.runtime.stage import Stage
    from voicebridge.session import Session


class ReplyWatch:
    """One call's late-reply and provider-failure policy (see the module docstring)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.options = session.options.replies
        self.filler_turns: set[int] = set()
        self._filler_wait: dict[int, int] = {}  # filler turn -> the wait it was said for
        self._wait = 0  # counts caller turns waited on
        self.failed_turns = 0  # caller turns in a row that got no reply
        self.giving_up = False
        self._enabled: bool | None = None
        self._armed = False
        self._turn_failed = False
        self._started_at = 0.0  # when the caller's turn ended
        self._quiet_since = 0.0  # when the current silence began
        self._after_turn = 0  # agent turns begun before the caller's turn ended
        self._fillers = 0
        self._text_turns: set[int] = set()

    # --- what the session tells it -----------------------------------------------------------
    def caller_turn_ended(self, now: float) -> None:
        ctx = self.session.ctx
        if ctx is None or self.giving_up:
            return
        self._armed = True
        self._wait += 1
        self._turn_failed = False
        self._started_at = self._quiet_since = now
        self._after_turn = ctx.turn
        self._fillers = 0
        self._text_turns.clear()

    def agent_text(self, frame: AgentText) -> None:
        """A dialogue that ends its turn without a word chose silence: nothing to wait for."""
        if not self._armed or frame.turn <= self._after_turn or frame.turn in self.filler_turns:
            return
        if frame.text.strip():
            self._text_turns.add(frame.turn)
        elif frame.last and frame.turn not in self._text_turns:
            self._armed = False

    def audio_sent(self, turn: int, now: float, duration_s: float) -> None:
        """The first chunk of a piece went out."""
        if not self._armed or turn <= self._after_turn:
            return
        if turn in self.filler_turns:
            self._quiet_since = now + duration_s  # silence starts again once it has played
            return
        self._armed = False
        self.failed_turns = 0

    def cleared(self) -> None:
        """A barge-in: the caller took the floor; whatever comes next is a new turn."""
        self._armed = False

    def is_filler(self, turn: int) -> bool:
        return turn in self.filler_turns

    def wanted(self, turn: int) -> bool:
        """False for a filler whose wait is over: a speaker that was itself slow may finish
        it after the reply began, and a filler must never come after the answer."""
        wait = self._filler_wait.get(turn)
        return wait is None or (self._armed and wait == self._wait)

    # --- the clock ------------------------------------------------------------------------
    async def tick(self, now: float) -> None:
        if not self._armed or self.giving_up or not self._active():
            return
        options = self.options
        timeout = options.reply_timeout_ms
        if timeout is not None and now - self._started_at >= timeout / 1000.0:
            await self._timed_out(now)
            return
        after = options.filler_after_ms
        if after is None or self._fillers >= options.max_fillers:
            return
        if now - self._quiet_since >= after / 1000.0:
            await self._filler(now)

    def _active(self) -> bool:
        if self._enabled is None:
            session = self.session
            roles = session.pipeline.roles() if session.pipeline is not None else set()
            self._enabled = {"dialogue", "tts"} <= roles
        return self._enabled

    async def _filler(self, now: float) -> None:
        session = self.session
        if session.ctx is None:
            return
        texts = self.options.filler_texts
        text = texts[self._fillers % len(texts)]  # each turn starts from the first line
        self._fillers += 1
        self._quiet_since = now  # no second filler before this one has had its chance
        turn = session.ctx.turn + 1  # the turn say() is about to begin
        self.filler_turns.add(turn)
        self._filler_wait[turn] = self._wait
        session.turns.aside(turn)
        session.log.info("reply_late_filler", turn=turn, waited_s=round(now - self._started_at, 3))
        session._note("filler", turn=turn, text=text)
        await session.say(text, direct=True)

    async def _timed_out(self, now: float) -> None:
        session = self.session
        self._armed = False
        waited = round(now - self._started_at, 3)
        session.log.warning("reply_timeout", waited_s=waited)
        session._note("reply_timeout", waited=waited)
        if session.pipeline is not None:
            # The late reply must not follow the apology: cancel it as a barge-in would.
            session.pipeline.interrupt()
        await self._turn_lost(circuit_open=False, can_speak=True)

    async def provider_failed(self, stage: Stage, error: ProviderError) -> None:
        """A stage gave up on its provider; the session has logged it."""
        if self.giving_up or self.session._ending:
            return
        can_speak = stage.role != "tts"
        if self._armed or not self._turn_failed:
            self._armed = False
            await self._turn_lost(circuit_open=error.circuit_open, can_speak=can_speak)
        elif error.circuit_open and self.options.give_up_when_circuit_open:
            await self._give_up("circuit_open", can_speak)

    async def _turn_lost(self, *, circuit_open: bool, can_speak: bool) -> None:
        """This caller turn gets no reply: apologise, or end the call if the provider stays down."""
        session = self.session
        self._turn_failed = True
        self.failed_turns += 1
        if circuit_open and self.options.give_up_when_circuit_open:
            await self._give_up("circuit_open", can_speak)
        elif self.failed_turns >= self.options.give_up_after:
            await self._give_up("failed_turns", can_speak)
        elif can_speak:
            await session.say(session.options.fallback_text, direct=True)

    async def _give_up(self, why: str, can_speak: bool) -> None:
        session = self.session
        self.giving_up = True
        self._armed = False
        session.log.error("provider_down_ending_call", why=why, failed_turns=self.failed_turns)
        session._note("provider_down", why=why, failed_turns=self.failed_turns)
        hangup = Hangup(reason="provider_down")
        if can_speak and await session.say(self.options.goodbye_text, then=hangup, direct=True):
            return
        # Nothing can be said (the speaker is what failed): hang up now.
        await session.request_action(hangup)
