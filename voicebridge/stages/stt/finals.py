"""One final transcript per caller utterance, for every streaming transcriber.

A streaming recogniser has its own endpointer: it often finalizes at a short pause that the VAD
bridges, or before the VAD has heard the end of speech. Passed on as they come, such finals would
make the dialogue answer half a sentence, or reply while the session still hears the caller (and
so barge in on itself). So the finals of one VAD utterance are held until the VAD's
``SpeechEnded``, then released together as the utterance's one final ``Transcript`` (after the
``SpeechEnded`` frame, as every other transcriber does).

:class:`UtteranceFinals` makes those decisions and nothing else: it is fed the VAD's edges and
the provider's finals and says what to emit. It does no I/O and keeps no time; the stage owns
the stream and emits what it is given. :class:`FinalWait` is the one timed part: the bounded
wait, on the call's clock, for a final the provider still owes after the VAD's end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from voicebridge.clock import wait_for
from voicebridge.frames import Transcript
from voicebridge.runtime.stage import Stage


@dataclass(frozen=True, slots=True)
class Piece:
    """One final result (or, when a wait ran out, one unfinished result) of an utterance."""

    text: str
    confidence: float | None
    at_ms: float


class AfterSpeech(Enum):
    """What a stage does when the VAD ends the caller's utterance."""

    RELEASE = "release"  # send the held finals now
    WAIT = "wait"  # the provider still owes words: wait for them (bounded), then release
    NOTHING = "nothing"


class UtteranceFinals:
    """Holds a transcriber's finals until the VAD ends the utterance; joins them into one.

    ``hold=False`` passes every final on at once (the stage's opt-out). With ``max_hold_ms``,
    finals held that long (by the stage's audio time) are ``overdue``: the VAD never ended the
    utterance, so the stage sends them anyway. ``confidence`` joins the parts' confidences into
    the utterance's (``min`` by default: as sure as its least sure part).
    """

    def __init__(
        self,
        *,
        hold: bool = True,
        max_hold_ms: float | None = None,
        confidence: Callable[[Sequence[float]], float] = min,
    ) -> None:
        self.hold = hold
        self.max_hold_ms = max_hold_ms
        self._join_confidence = confidence
        self.speaking = False  # inside a VAD utterance
        self.released = False  # this utterance's final went out
        self._held: list[Piece] = []
        self._held_since_ms = 0.0

    # --- what the stage shows ---------------------------------------------------------------
    @property
    def held(self) -> bool:
        return bool(self._held)

    @property
    def held_text(self) -> str:
        return " ".join(piece.text for piece in self._held)

    @property
    def held_at_ms(self) -> float:
        return max((piece.at_ms for piece in self._held), default=0.0)

    def with_held(self, interim: str) -> str:
        """Interim words as the caller has said them so far: the held finals, then these."""
        return " ".join(text for text in (self.held_text, interim) if text)

    # --- inputs -----------------------------------------------------------------------------
    def speech_started(self) -> None:
        """The caller (still) speaks: what is held joins this utterance."""
        self.speaking = True
        self.released = False

    def speech_ended(self, *, owed: bool, expecting: bool = False) -> AfterSpeech:
        """The VAD ended the utterance. ``owed``: the provider has shown words it has not
        finalized yet. ``expecting``: wait for a final even so (bounded), unless this utterance
        already had one, so a lockstep driver does not run ahead of it."""
        self.speaking = False
        if self.hold and self._held and not owed:
            return AfterSpeech.RELEASE
        if (self.hold and owed) or (expecting and not self.released):
            return AfterSpeech.WAIT
        return AfterSpeech.NOTHING

    def final(
        self,
        text: str,
        confidence: float | None,
        at_ms: float,
        *,
        owed: bool = False,
        now_ms: float = 0.0,
    ) -> Transcript | None:
        """A final result (``text`` may be empty). Returns the transcript to send now, if the
        caller has stopped speaking and the provider owes nothing more (``owed``)."""
        if text:
            if not self._held:
                self._held_since_ms = now_ms
            self._held.append(Piece(text, confidence, at_ms))
        if self.hold and (self.speaking or owed):
            return None
        return self.release()

    def overdue(self, now_ms: float) -> bool:
        """Finals have been held ``max_hold_ms`` (the VAD never ended the utterance)."""
        if self.max_hold_ms is None or not self._held:
            return False
        return now_ms - self._held_since_ms >= self.max_hold_ms

    def release(self, unfinished: Iterable[Piece] = ()) -> Transcript | None:
        """The utterance's one final transcript: the held finals, then ``unfinished`` results
        the stage counts as said (their latest interim words, when the wait ran out)."""
        pieces = [*self._held, *unfinished]
        self._held = []
        if not pieces:
            return None
        self.released = True
        scores = [piece.confidence for piece in pieces if piece.confidence is not None]
        return Transcript(
            " ".join(piece.text for piece in pieces),
            True,
            self._join_confidence(scores) if scores else None,
            max(piece.at_ms for piece in pieces),
        )


class FinalWait:
    """The bounded wait for the provider's final after the VAD's end (``AfterSpeech.WAIT``).

    It is the stage's background work and waits on the call's clock, so the stage counts as busy
    (a lockstep driver waits for the final instead of racing ahead) until the final is sent
    (``arrived``) or the wait runs out, and then ``on_timeout`` sends what there is.
    """

    def __init__(self, stage: Stage, on_timeout: Callable[[], Awaitable[None]]) -> None:
        self._stage = stage
        self._on_timeout = on_timeout
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, seconds: float) -> None:
        self.cancel()
        self._arrived.clear()
        self._task = self._stage.spawn(self._run(seconds), name=f"{self._stage.name}-final-wait")

    def arrived(self) -> None:
        """The utterance's final went out: the wait is over."""
        self._arrived.set()

    def cancel(self) -> None:
        """The caller speaks again: what is held joins the new utterance."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _run(self, seconds: float) -> None:
        try:
            await wait_for(self._stage.ctx.clock, self._arrived.wait(), seconds)
        except TimeoutError:
            self._task = None
            await self._on_timeout()
