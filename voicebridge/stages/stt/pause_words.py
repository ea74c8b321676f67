"""A streaming transcriber's words at the VAD's pause, once its results reach the pause.

The VAD's end-of-turn decision judges the words said before a silence (``text_cues``). A
streaming recogniser's results lag the audio by a few hundred ms, so the hypothesis it holds when
the silence begins may still miss the last word: "I'd like a table" while the caller said "I'd
like a table for". :class:`PauseWords` waits for a result whose own timing shows it reaches the
pause, then hands back the utterance's words so far (its finals, then the open partial results):

- a result with word times reaches the silence that began at ``since_ms`` when its last word ends
  at ``since_ms - slack_ms`` or later (the VAD hears a little speech after the last word ends, so
  its silence begins a little late; a provider's endpoint can sit a little early);
- a final result without word times reaches it when it ends there or later: the provider will
  say nothing more about the audio before its end;
- a partial result without word times (Google's interim results: their end is how far the
  recogniser has listened, not where the words end) only when it ends at ``since_ms`` or later:
  the recogniser has heard all the speech before the pause.

A result whose last word ends after ``since_ms + slack_ms`` heard the caller speak again: the
pause is over, its words are no longer asked for. No result reaching the pause: no words at all,
and the decision falls back to the silence timer. Later results that still reach the pause and
change the words are handed back again (a final adds the question mark its partial lacked).

Times are the call's stream ms (:class:`~voicebridge.stages.stt.sent_audio.SentAudio` maps a
provider's offsets). Sans-I/O: the stage feeds the VAD's edges and its provider's results, and
publishes what is returned.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Heard", "PauseWords"]

DEFAULT_SLACK_MS = 150.0
_MAX_FINALS = 64  # per utterance; a call whose VAD never starts one must not grow without end
_MAX_OPEN = 16


@dataclass(frozen=True, slots=True)
class Heard:
    """One provider result, its times in stream ms."""

    key: str  # the result it revises: a partial replaces the last one with its key, a final ends it
    text: str
    final: bool
    end_ms: float  # the end of the audio the result speaks for
    words_end_ms: float | None = None  # the end of its last word, when the provider says


class PauseWords:
    """The words of the current VAD utterance, and whether they reach the current pause."""

    def __init__(self, slack_ms: float = DEFAULT_SLACK_MS) -> None:
        self.slack_ms = slack_ms
        self.results = 0  # results seen (tests wait on it)
        self._onset: float | None = None  # the current utterance began here (VAD)
        self._finals: list[Heard] = []
        self._open: dict[str, Heard] = {}
        self._since: float | None = None  # the current pause (None: no pause asked about)
        self._said: str | None = None  # what was handed back for it

    # --- the VAD's edges ----------------------------------------------------------------------
    def speech_started(self, at_ms: float) -> None:
        """A new utterance: results about audio before it belong to an earlier one."""
        self._onset = at_ms
        self._since = None
        self._finals = [h for h in self._finals if self._ours(h)]
        self._open = {k: h for k, h in self._open.items() if self._ours(h)}

    def paused(self, since_ms: float) -> tuple[float, str] | None:
        """The VAD paused at ``since_ms``: the words for it, if the results already reach it."""
        self._since, self._said = since_ms, None
        return self._offer()

    def speech_ended(self) -> None:
        """The turn is over: its pauses are asked about no more."""
        self._since = None

    # --- the provider's results ---------------------------------------------------------------
    def result(self, heard: Heard) -> tuple[float, str] | None:
        """A result came in: the words for the current pause, if they now reach it (or changed)."""
        self.results += 1
        if not self._ours(heard):
            return None  # a late result about an earlier utterance
        self._open.pop(heard.key, None)
        if heard.final:
            self._finals.append(heard)
            del self._finals[:-_MAX_FINALS]
        else:
            self._open[heard.key] = heard
            while len(self._open) > _MAX_OPEN:
                del self._open[next(iter(self._open))]
        since, words_end = self._since, heard.words_end_ms
        if since is not None and words_end is not None and words_end > since + self.slack_ms:
            self._since = None  # a word inside the silence: the caller spoke again
            return None
        return self._offer()

    # --- the decision -------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The utterance so far: its finals, then its open partial results."""
        pieces = [*self._finals, *sorted(self._open.values(), key=lambda h: h.end_ms)]
        return " ".join(h.text for h in pieces if h.text)

    def reaches(self, heard: Heard, since_ms: float) -> bool:
        """Does ``heard`` speak for all the speech before the silence that began at
        ``since_ms``? (The rules are in the module doc.)"""
        if heard.words_end_ms is not None:
            return heard.words_end_ms >= since_ms - self.slack_ms
        if heard.final:
            return heard.end_ms >= since_ms - self.slack_ms
        return heard.end_ms >= since_ms

    def _offer(self) -> tuple[float, str] | None:
        since = self._since
        if since is None:
            return None
        pieces = [*self._finals, *self._open.values()]
        if not any(self.reaches(h, since) for h in pieces):
            return None
        text = self.text
        if text == self._said:
            return None
        self._said = text
        return since, text

    def _ours(self, heard: Heard) -> bool:
        end = max(heard.end_ms, heard.words_end_ms or heard.end_ms)
        return self._onset is None or end > self._onset
