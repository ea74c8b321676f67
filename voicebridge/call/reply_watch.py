"""Bounded silence: what the call does while a reply is late or its provider is failing.

A policy, sans-I/O: the call core tells it what happened and it answers with what to do
(``SayFiller``, ``AbandonReply``, ``SayFallback``, ``GiveUp``); the core carries that out.

The watch arms when the caller's turn ends (a final transcript reached the dialogue) and
disarms when the first audio of the reply to it is sent. In between, on the core's tick:

* after ``filler_after_ms`` of silence it asks for a filler ("One moment."), up to
  ``max_fillers`` per caller turn, each spaced by the same silence after the previous one
  played, so the caller never waits longer than that in silence;
* at ``reply_timeout_ms`` it gives the reply up: the late work is cancelled (as a barge-in
  would) so it can never arrive after the apology, and ``fallback_text`` is spoken.

It also decides what a provider failure becomes: the fallback line once per caller turn, or,
when the provider stays down (``give_up_after`` failed turns in a row, or its circuit breaker is
open), ``goodbye_text`` and a clean hang-up.

Fillers, fallbacks and goodbyes go straight to the speaker stage: the dialogue stage may be the
one that is stuck, and frames pushed at the head would queue behind it. Fillers are spoken as
their own turns and left out of the dialogue history (a model that saw them would learn to say
them); fallbacks and goodbyes are kept, as the caller heard them.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicebridge.call.options import ReplyOptions


@dataclass(frozen=True, slots=True)
class SayFiller:
    text: str
    waited_s: float


@dataclass(frozen=True, slots=True)
class AbandonReply:
    """The reply timed out: cancel the late work, then apologise (a ``SayFallback`` or
    ``GiveUp`` follows)."""

    waited_s: float


@dataclass(frozen=True, slots=True)
class SayFallback:
    pass


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The provider stays down: say goodbye (when ``can_speak``) and hang up."""

    why: str
    can_speak: bool
    failed_turns: int


Decision = SayFiller | AbandonReply | SayFallback | GiveUp


class ReplyWatch:
    """One call's late-reply and provider-failure policy (see the module docstring)."""

    def __init__(self, options: ReplyOptions) -> None:
        self.options = options
        self.enabled = False  # set when the pipeline has both a dialogue and a speaker
        self.filler_turns: set[int] = set()
        self._filler_wait: dict[int, int] = {}  # filler turn -> the wait it was said for
        self._wait = 0  # counts caller turns waited on
        self.failed_turns = 0  # caller turns in a row that got no reply
        self.giving_up = False
        self._armed = False
        self._turn_failed = False
        self._started_at = 0.0  # when the caller's turn ended
        self._quiet_since = 0.0  # when the current silence began
        self._after_turn = 0  # agent turns begun before the caller's turn ended
        self._fillers = 0
        self._text_turns: set[int] = set()

    # --- what the core tells it ---------------------------------------------------------------
    def caller_turn_ended(self, now: float, begun_turn: int) -> None:
        if self.giving_up:
            return
        self._armed = True
        self._wait += 1
        self._turn_failed = False
        self._started_at = self._quiet_since = now
        self._after_turn = begun_turn
        self._fillers = 0
        self._text_turns.clear()

    def agent_text(self, turn: int, text: str, last: bool) -> None:
        """A dialogue that ends its turn without a word chose silence: nothing to wait for."""
        if not self._armed or turn <= self._after_turn or turn in self.filler_turns:
            return
        if text.strip():
            self._text_turns.add(turn)
        elif last and turn not in self._text_turns:
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

    def filler_started(self, turn: int) -> None:
        """The filler asked for by ``tick`` is being spoken as ``turn``."""
        self.filler_turns.add(turn)
        self._filler_wait[turn] = self._wait

    def is_filler(self, turn: int) -> bool:
        return turn in self.filler_turns

    def wanted(self, turn: int) -> bool:
        """False for a filler whose wait is over: a speaker that was itself slow may finish
        it after the reply began, and a filler must never come after the answer."""
        wait = self._filler_wait.get(turn)
        return wait is None or (self._armed and wait == self._wait)

    def forget_before(self, turn: int) -> None:
        """Bounded memory on long calls."""
        self.filler_turns = {t for t in self.filler_turns if t >= turn}
        for old in [t for t in self._filler_wait if t < turn]:
            del self._filler_wait[old]

    # --- decisions ----------------------------------------------------------------------------
    def tick(self, now: float) -> list[Decision]:
        if not self._armed or self.giving_up or not self.enabled:
            return []
        options = self.options
        timeout = options.reply_timeout_ms
        if timeout is not None and now - self._started_at >= timeout / 1000.0:
            self._armed = False
            waited = round(now - self._started_at, 3)
            return [AbandonReply(waited), *self._turn_lost(circuit_open=False, can_speak=True)]
        after = options.filler_after_ms
        if after is None or self._fillers >= options.max_fillers:
            return []
        if now - self._quiet_since < after / 1000.0:
            return []
        texts = options.filler_texts
        text = texts[self._fillers % len(texts)]  # each turn starts from the first line
        self._fillers += 1
        self._quiet_since = now  # no second filler before this one has had its chance
        return [SayFiller(text, round(now - self._started_at, 3))]

    def provider_failed(self, *, speaker_failed: bool, circuit_open: bool) -> list[Decision]:
        """A stage gave up on its provider."""
        if self.giving_up:
            return []
        can_speak = not speaker_failed
        if self._armed or not self._turn_failed:
            self._armed = False
            return self._turn_lost(circuit_open=circuit_open, can_speak=can_speak)
        if circuit_open and self.options.give_up_when_circuit_open:
            return [self._give_up("circuit_open", can_speak)]
        return []

    def _turn_lost(self, *, circuit_open: bool, can_speak: bool) -> list[Decision]:
        """This caller turn gets no reply: apologise, or end the call if the provider stays down."""
        self._turn_failed = True
        self.failed_turns += 1
        if circuit_open and self.options.give_up_when_circuit_open:
            return [self._give_up("circuit_open", can_speak)]
        if self.failed_turns >= self.options.give_up_after:
            return [self._give_up("failed_turns", can_speak)]
        return [SayFallback()] if can_speak else []

    def _give_up(self, why: str, can_speak: bool) -> GiveUp:
        self.giving_up = True
        self._armed = False
        return GiveUp(why, can_speak, self.failed_turns)
