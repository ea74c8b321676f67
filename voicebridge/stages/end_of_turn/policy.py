"""When has the caller finished their turn? The decision, with no I/O and no clock of its own.

A silence timer alone forces a bad trade: short, and a caller who pauses mid-sentence ("I'd like
to book a table for ... four") is answered before they finish; long, and a caller who has finished
waits the whole window. :class:`EndOfTurnPolicy` combines the VAD's pause with two opinions on
whether the caller is done, each optional:

- **text cues**: the words transcribed up to the pause (whisper's speculative transcript, or a
  streaming transcriber's results once they reach the pause), judged by
  :func:`~voicebridge.stages.end_of_turn.text_cues.judge`: complete, incomplete or unsure;
- **an audio model** (smart-turn), asked at ``check_ms`` of silence: P(complete).

The decision, once ``check_ms`` of silence has passed:

- words "incomplete" hold the turn open up to ``max_silence_ms`` of silence;
- words "complete" end it at once (a plain statement no sooner than ``full_stop_ms``: whisper
  ends a clause cut off after a content word with a full stop too), unless the model hears an
  unfinished turn: then the silence timer (``silence_ms``) decides, so a veto never makes a
  finished caller wait long;
- otherwise (words unsure, or none) the model decides: "complete" ends the turn, "incomplete"
  waits up to ``max_silence_ms``; with no model, or no verdict (the model failed, the pool was
  full, or it is still running), the silence timer ends it after ``silence_ms``;
- words expected but not here yet are waited for until ``check_ms + words_wait_ms``; a
  transcriber that publishes none (``words_expected`` says so) is not waited for at all;
- speech resuming keeps the turn open: the silence, its check and any late answer are void.

With neither opinion it is the silence timer alone, so the VAD has one path. Times are the
stream's milliseconds, as the VAD counts them; the driver feeds every silent frame
(:meth:`silent`), every speech frame (:meth:`speech`), verdicts and words, and acts on what is
returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from voicebridge.stages.end_of_turn.text_cues import Judgement, judge

__all__ = ["EndOfTurnPolicy", "EndOfTurnSettings", "EndTurn", "StartCheck"]


@dataclass(frozen=True, slots=True)
class EndOfTurnSettings:
    """How the decision is made; the ``vad`` stage's ``end_of_turn`` options, in ms."""

    text_cues: bool = False  # judge the transcriber's words before the pause
    model: bool = False  # ask an audio model at ``check_ms``
    silence_ms: float = 500.0  # the silence timer: the end when nothing says otherwise
    check_ms: float = 200.0  # silence after which a verdict may end the turn
    max_silence_ms: float = 1500.0  # an incomplete turn ends after this much silence anyway
    threshold: float = 0.5  # the model's P(complete) at or above which it says complete
    words_wait_ms: float = 800.0  # after check_ms, how long to wait for words that are late
    digit_lengths: tuple[int, ...] = ()  # digit strings of these lengths are complete
    full_stop_ms: float = 0.0  # a "complete" that is only a full stop ends no sooner than this


@dataclass(frozen=True, slots=True)
class StartCheck:
    """Ask the model about the utterance so far; report with ``verdict(silent_since_ms, ...)``."""

    silent_since_ms: float


@dataclass(frozen=True, slots=True)
class EndTurn:
    """The turn is over; the utterance ends where its last silence began."""

    silent_since_ms: float
    reason: str  # "complete", "silence", "max_silence", "vetoed"
    probability: float | None = None
    words: str | None = None
    cue: str | None = None  # the text rule that decided, if any


class EndOfTurnPolicy:
    """The state of one caller's current silence; see the module doc."""

    def __init__(
        self, settings: EndOfTurnSettings, words_expected: Callable[[], bool] = lambda: True
    ) -> None:
        self.settings = settings
        self._words_expected = words_expected
        self._since: float | None = None  # start of the current silence (None: speech)
        self._now = 0.0
        self._checking = False
        self._probability: float | None = None
        self._failed = False
        self._words: str | None = None
        self._words_since: float | None = None  # the silence the words were transcribed at
        self._judgement: Judgement | None = None

    # --- inputs -----------------------------------------------------------------------------
    def speech(self) -> None:
        """The caller is speaking: the turn stays open and any check of the last pause is void."""
        self._since = None

    def reset(self) -> None:
        """The utterance ended: answers about its silences that come late are void."""
        self._since = None

    def silent(self, since_ms: float, now_ms: float) -> StartCheck | EndTurn | None:
        """Another silent frame: silence since ``since_ms``, the stream now at ``now_ms``."""
        if since_ms != self._since:
            self._since = since_ms
            self._checking = False
            self._probability = None
            self._failed = False
            if self._words is not None and self._words_since != since_ms:
                self._words = self._judgement = None
        self._now = now_ms
        s = self.settings
        if not self._checking and self._silence() >= s.check_ms:
            self._checking = True
            if s.model:
                return StartCheck(since_ms)
        return self._decide()

    def verdict(self, since_ms: float, probability: float | None) -> EndTurn | None:
        """The model's check of the silence that began at ``since_ms`` answered (None: failed)."""
        if since_ms != self._since or not self._checking:
            return None  # the caller spoke again since: a stale answer
        if probability is None:
            self._failed = True
        else:
            self._probability = probability
        return self._decide()

    def words(self, since_ms: float, text: str) -> EndTurn | None:
        """What the caller said up to the silence that began at ``since_ms`` ("" for nothing).

        Words may arrive before the policy has seen that silence's frames (the transcriber
        ran on a pause the VAD reported); they are kept for it."""
        if not self.settings.text_cues:
            return None
        if self._since is not None and since_ms != self._since:
            return None  # about an older silence
        self._words, self._words_since = text, since_ms
        self._judgement = judge(text, self.settings.digit_lengths)
        return self._decide() if self._since == since_ms and self._checking else None

    # --- the decision -----------------------------------------------------------------------
    def _silence(self) -> float:
        return self._now - (self._since if self._since is not None else self._now)

    def _decide(self) -> EndTurn | None:
        s = self.settings
        since = self._since
        if since is None or not self._checking:
            return None
        silence = self._silence()
        p = self._probability
        words = self._judgement if self._words_since == since else None
        waiting = s.text_cues and words is None and self._words_expected()
        if waiting and silence < s.check_ms + s.words_wait_ms:
            return None  # the words are on their way
        text = words.verdict if words is not None else "unsure"
        cue = words.reason if words is not None else None

        def end(reason: str) -> EndTurn:
            return EndTurn(since, reason, p, self._words if words is not None else None, cue)

        if text == "incomplete":
            return end("max_silence") if silence >= s.max_silence_ms else None
        audio: str | None = None  # None: no model, it failed, or it has not answered yet
        if s.model and p is not None:
            audio = "complete" if p >= s.threshold else "incomplete"
        if text == "complete" and cue == "full stop" and silence < s.full_stop_ms:
            return None  # whisper ends cut-off clauses with a full stop too: a little longer
        if text == "complete":
            if audio == "incomplete":  # the voice disagrees: the silence timer decides
                return end("vetoed") if silence >= s.silence_ms else None
            if audio == "complete" or not s.model or self._failed:
                return end("complete")
            return end("complete") if silence >= s.silence_ms else None  # model still running
        if audio == "complete":
            return end("complete")
        if audio == "incomplete":
            return end("max_silence") if silence >= s.max_silence_ms else None
        return end("silence") if silence >= s.silence_ms else None
