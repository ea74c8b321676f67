"""When has the caller finished their turn? The decision, with no I/O and no clock of its own.

A silence timer alone forces a bad trade: short, and a caller who pauses mid-sentence ("I'd like
to book a table for ... four") is answered before they finish; long, and a caller who has finished
waits the whole window. :class:`EndOfTurnPolicy` combines the VAD's pause with a verdict on
whether the caller sounds done:

- ``check_ms`` of silence starts a check (the stage runs the model and reports its verdict);
- a "complete" verdict ends the turn at once;
- an "incomplete" one waits for speech up to ``max_silence_ms`` of silence;
- speech resuming keeps the turn open: the silence, its check and any late verdict are void;
- no verdict (the model failed, or the worker pool was full) falls back to the silence timer,
  ``silence_ms``, so an overloaded server behaves as before instead of waiting longer.

With ``text_cues``, the words transcribed up to the pause are a second opinion: words that
cannot end a sentence (a trailing "for", "and", "the") make the turn incomplete whatever the
audio says. The policy then waits for those words until ``words_wait_ms`` of silence, and decides
on the audio alone when none come (a transcriber that publishes no early words).

Times are the stream's milliseconds, as the VAD counts them; the driver feeds every silent frame
(:meth:`silent`), every speech frame (:meth:`speech`), verdicts and words, and acts on what is
returned. Without a model (``model=False``) it is today's silence timer, so the VAD has one path.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicebridge.stages.end_of_turn.text_cues import unfinished

__all__ = ["EndOfTurnPolicy", "EndOfTurnSettings", "EndTurn", "StartCheck"]


@dataclass(frozen=True, slots=True)
class EndOfTurnSettings:
    """How the decision is made; the ``vad`` stage's ``end_of_turn`` options, in ms."""

    model: bool = True  # False: end after ``silence_ms`` of silence, nothing else
    silence_ms: float = 500.0  # the silence timer (also the fallback when no verdict comes)
    check_ms: float = 200.0  # silence that starts a check
    threshold: float = 0.5  # probability of "complete" at or above which the turn ends
    max_silence_ms: float = 1500.0  # an incomplete turn ends after this much silence anyway
    text_cues: bool = False
    words_wait_ms: float = 800.0  # silence after which a check decides without words


@dataclass(frozen=True, slots=True)
class StartCheck:
    """Score the utterance so far; report with ``verdict(silent_since_ms, ...)``."""

    silent_since_ms: float


@dataclass(frozen=True, slots=True)
class EndTurn:
    """The turn is over; the utterance ends where its last silence began."""

    silent_since_ms: float
    reason: str  # "complete", "silence", "max_silence", "no_verdict"
    probability: float | None = None
    words: str | None = None


class EndOfTurnPolicy:
    """The state of one caller's current silence; see the module doc."""

    def __init__(self, settings: EndOfTurnSettings) -> None:
        self.settings = settings
        self._since: float | None = None  # start of the current silence (None: speech)
        self._now = 0.0
        self._checking = False
        self._probability: float | None = None
        self._failed = False
        self._words: str | None = None

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
            self._words = None
        self._now = now_ms
        s = self.settings
        if not s.model:
            return EndTurn(since_ms, "silence") if self._silence() >= s.silence_ms else None
        if not self._checking and self._silence() >= s.check_ms:
            self._checking = True
            return StartCheck(since_ms)
        return self._decide()

    def verdict(self, since_ms: float, probability: float | None) -> EndTurn | None:
        """The check of the silence that began at ``since_ms`` answered (None: it failed)."""
        if since_ms != self._since or not self._checking:
            return None  # the caller spoke again since: a stale answer
        if probability is None:
            self._failed = True
        else:
            self._probability = probability
        return self._decide()

    def words(self, since_ms: float, text: str) -> EndTurn | None:
        """What the caller said up to the silence that began at ``since_ms``."""
        if since_ms != self._since or not self.settings.text_cues:
            return None
        self._words = text
        return self._decide() if self._checking else None

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
        if p is None:
            if self._failed and silence >= s.silence_ms:
                return EndTurn(since, "no_verdict")
            return EndTurn(since, "max_silence") if silence >= s.max_silence_ms else None
        waiting_for_words = (
            s.text_cues and self._words is None and silence < s.check_ms + s.words_wait_ms
        )
        if not waiting_for_words and self._complete(p):
            return EndTurn(since, "complete", p, self._words)
        if silence >= s.max_silence_ms:
            return EndTurn(since, "max_silence", p, self._words)
        return None

    def _complete(self, probability: float) -> bool:
        if probability < self.settings.threshold:
            return False
        return not (self.settings.text_cues and self._words and unfinished(self._words))
