"""Per-call state shared by the stages of one pipeline and by its session.

Stages never talk to Plivo; what they need to know about the call (ids, codec, rate, headers),
the turn numbers that barge-in makes stale, and the dialogue history of what the caller actually
heard all live here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from voicebridge.call.heard_audio import HeardAudio
from voicebridge.call.turns import Turns
from voicebridge.clock import Clock, MonotonicClock
from voicebridge.frames import CallStarted, Transcript


@dataclass(slots=True)
class HistoryEntry:
    """One utterance in the conversation, as the other party perceived it.

    For the agent, ``text`` is what the caller heard (acknowledged by Plivo's ``playedStream``),
    and ``interrupted`` says the caller cut the agent off after those words.
    """

    role: Literal["caller", "agent"]
    text: str
    turn: int | None = None
    interrupted: bool = False

    def as_prompt_text(self) -> str:
        """The text as a language model should see it: interruptions are made explicit."""
        return f"{self.text} [interrupted]" if self.interrupted else self.text


@dataclass(slots=True)
class CallInfo:
    call_id: str = ""
    stream_id: str = ""
    account_id: str = ""
    encoding: str = "audio/x-l16"
    sample_rate: int = 8000
    extra_headers: dict[str, str] = field(default_factory=dict)
    # An outbound call's variables (``voicebridge dial --var``, ``POST /calls``): the
    # ``{name}`` placeholders of greetings, rules and prompts.
    vars: dict[str, str] = field(default_factory=dict)

    def started(self, *, resumed: bool = False) -> CallStarted:
        """The frame that tells the stages this call began (or, ``resumed``, went on)."""
        return CallStarted(
            call_id=self.call_id,
            stream_id=self.stream_id,
            account_id=self.account_id,
            encoding=self.encoding,
            sample_rate=self.sample_rate,
            extra_headers=dict(self.extra_headers),
            resumed=resumed,
        )


class CallContext:
    """What one call's stages share. Created by the call core before the pipeline starts."""

    def __init__(
        self,
        info: CallInfo | None = None,
        clock: Clock | None = None,
        logger: Any = None,
        turns: Turns | None = None,
    ) -> None:
        self.info = info or CallInfo()
        self.clock: Clock = clock or MonotonicClock()
        self.log = logger or structlog.get_logger("voicebridge.call")
        self.history: list[HistoryEntry] = []
        self.turns = turns or Turns()  # the call's one owner of turn numbers
        # How much of each agent turn's audio the caller heard (written by the call core).
        self.heard_audio = HeardAudio()
        self.state: dict[str, Any] = {}  # free space for stages (e.g. a dialogue's slots)
        # Rewrites each final transcript on its way into the dialogue stage (set by the core
        # from the session options: spoken digits as digits, whatever the transcriber).
        self.dialogue_input: Callable[[Transcript], Transcript] | None = None

    # --- turns (the call's ``Turns``; stages use these) --------------------------------------
    @property
    def turn(self) -> int:
        """The number of the newest agent turn begun."""
        return self.turns.begun

    def begin_turn(self) -> int:
        """Start a new agent reply and return its turn number."""
        return self.turns.begin()

    @property
    def stale_through(self) -> int:
        return self.turns.stale_through

    def is_stale(self, turn: int | None) -> bool:
        """True for frames of a reply the caller interrupted; they must not reach the caller."""
        return turn is not None and turn <= self.turns.stale_through

    # --- history ----------------------------------------------------------------------------
    def add_caller_text(self, text: str, *, before_turn: int | None = None) -> None:
        """The caller's words. ``before_turn``: an agent turn already begun to answer them (a
        speech-to-speech model transcribes the caller while it replies): they go in before that
        turn's entry, where the caller said them."""
        entry = HistoryEntry("caller", text)
        history = self.history
        at = len(history)
        if before_turn is not None:
            # Only the agent entries since the caller's previous words can be answering these.
            for index in range(len(history) - 1, -1, -1):
                earlier = history[index]
                if earlier.role == "caller":
                    break
                if earlier.turn is not None and earlier.turn >= before_turn:
                    at = index
        history.insert(at, entry)

    def agent_entry(self, turn: int) -> HistoryEntry:
        """The history entry of an agent turn, created on first use (in turn order)."""
        for entry in reversed(self.history):
            if entry.role == "agent" and entry.turn == turn:
                return entry
        entry = HistoryEntry("agent", "", turn=turn)
        self.history.append(entry)
        return entry
