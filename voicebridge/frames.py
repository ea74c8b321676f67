"""Frames: the small immutable messages that flow between stages.

Audio inside a pipeline is mono int16 numpy at the stream's own rate (8000 or 16000 Hz), so no
stage ever guesses a format. Frames that belong to an agent reply carry the ``turn`` they were
produced for; after a barge-in the session marks older turns stale and the runtime drops their
frames before they reach the socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Frame:
    """Base of every frame. ``turn`` is None for frames that belong to no agent reply."""

    @property
    def turn_tag(self) -> int | None:
        return None


# --- call lifecycle -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallStarted(Frame):
    """The stream started: who is calling and in which format audio flows both ways."""

    call_id: str
    stream_id: str
    account_id: str
    encoding: str  # "audio/x-mulaw" or "audio/x-l16"
    sample_rate: int
    extra_headers: dict[str, str] = field(default_factory=dict)
    # True when a dropped stream came back and the call goes on: the caller was already
    # greeted, so stages that greet or open a conversation skip that.
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class CallEnded(Frame):
    """The stream ended (socket closed, hang-up, fatal error)."""

    reason: str = "closed"


# --- caller side ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaIn(Frame):
    """Caller audio as it came off the wire: raw bytes in the stream's codec."""

    payload: bytes
    timestamp_ms: float  # stream time of the chunk's start (Plivo's media timestamp, or ours)


@dataclass(frozen=True, slots=True)
class AudioIn(Frame):
    """Decoded caller audio, usually 20 ms."""

    pcm: PCM
    timestamp_ms: float


@dataclass(frozen=True, slots=True)
class SpeechStarted(Frame):
    """The caller started speaking; ``at_ms`` is the stream time of speech onset."""

    at_ms: float


@dataclass(frozen=True, slots=True)
class SpeechEnded(Frame):
    """The caller stopped speaking. ``audio`` is the whole utterance, pre-roll included."""

    at_ms: float
    started_ms: float
    audio: PCM = field(repr=False, default_factory=lambda: np.zeros(0, np.int16))


@dataclass(frozen=True, slots=True)
class SpeechPaused(Frame):
    """The caller has been silent ``pause_ms`` mid-utterance; the utterance may be over.

    ``at_ms`` is where the silence began: a ``SpeechEnded`` with the same ``at_ms`` confirms this
    pause was the end, so a transcriber may start on ``audio`` early and be done sooner.
    """

    at_ms: float
    started_ms: float
    audio: PCM = field(repr=False, default_factory=lambda: np.zeros(0, np.int16))


@dataclass(frozen=True, slots=True)
class Transcript(Frame):
    """Words the caller said; interim results have ``final`` False.

    ``reply_turn`` is set by a speech-to-speech stage, whose model hears the caller's audio and
    answers it itself, transcribing it on the side: these words were already answered, so
    nothing may hold them back, and they go into the history before the agent turn begun to
    answer them (``reply_turn``; 0 when none has begun yet).
    """

    text: str
    final: bool = True
    confidence: float | None = None
    at_ms: float = 0.0
    reply_turn: int | None = None


@dataclass(frozen=True, slots=True)
class Dtmf(Frame):
    """A keypad digit the caller pressed."""

    digit: str
    at_ms: float = 0.0


# --- agent side -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentText(Frame):
    """A sentence-sized piece of the agent's reply. ``last`` marks the final piece of the turn."""

    text: str
    turn: int
    last: bool = True

    @property
    def turn_tag(self) -> int | None:
        return self.turn


@dataclass(frozen=True, slots=True)
class AgentAudio(Frame):
    """PCM at the pipeline rate that speaks ``text`` (one piece of a reply)."""

    pcm: PCM = field(repr=False)
    turn: int
    text: str = ""
    last: bool = True
    # When each whitespace word of ``text`` ends, in ms from the start of ``pcm``, if the speaker
    # knows (Piper's alignments, cloud speech marks). The ledger then knows exactly which words
    # played; without it, it assumes an even rate of characters.
    word_ends_ms: tuple[float, ...] | None = field(default=None, repr=False)

    @property
    def turn_tag(self) -> int | None:
        return self.turn


@dataclass(frozen=True, slots=True)
class OutputAudio(Frame):
    """Agent audio encoded in the stream's codec, ready for ``playAudio``."""

    payload: bytes = field(repr=False)
    turn: int
    text: str = ""
    last: bool = True
    duration_ms: float = 0.0
    word_ends_ms: tuple[float, ...] | None = field(default=None, repr=False)

    @property
    def turn_tag(self) -> int | None:
        return self.turn


@dataclass(frozen=True, slots=True)
class Hangup(Frame):
    """The agent ends the call once everything already sent has played."""

    reason: str = "agent"


@dataclass(frozen=True, slots=True)
class Transfer(Frame):
    """The agent hands the call to another number or SIP URI."""

    to: str
    reason: str = "agent"


@dataclass(frozen=True, slots=True)
class Metadata(Frame):
    """Free-form event a custom stage wants logged and recorded in reports."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
