"""When caller speech cuts the agent off, and when an interruption turns out to be false.

Sans-I/O, on the call's stream time (ms of caller audio). The session feeds it speech edges,
transcripts and the passing of time, and asks it two questions: clear the agent now? let it go on?

* An interruption needs caller speech lasting ``guard_ms`` while the agent is talking, and, with
  ``min_words``, that many words in the caller's (interim or final) transcript. Backchannels
  ("uh-huh", "okay") never count as words, so with ``min_words >= 1`` they never cut the agent.
* With ``min_words == 0`` the clear goes out at the guard. If the speech then yields no words
  other than backchannels (a cough, a door, "mm-hmm") within ``false_interruption_ms`` of its
  end, the interruption was false: the agent continues from where the caller stopped hearing
  it (not to be confused with resuming a dropped call, ``voicebridge.call.capture``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from voicebridge.call.options import BargeInOptions

_WORD = re.compile(r"[a-z0-9']+(?:-[a-z0-9']+)*")


class Verdict(Enum):
    NONE = "none"
    CLEAR = "clear"  # interrupt the agent now
    CONTINUE = "continue"  # the last interruption was false: let the agent go on


@dataclass(slots=True)
class _Burst:
    """One stretch of caller speech, from onset to end."""

    onset_ms: float
    ended_ms: float | None = None
    words: int = 0
    backchannel_only_final: bool = False
    cleared: bool = False
    resolved: bool = False  # a cleared burst decided as real or false


class BargeInPolicy:
    """Decides barge-ins for one call."""

    def __init__(self, options: BargeInOptions) -> None:
        self.options = options
        self._backchannels = {
            " ".join(_WORD.findall(b.lower())) for b in options.backchannels if b.strip()
        }
        self._burst: _Burst | None = None
        self._awaiting: _Burst | None = None  # cleared, waiting to learn if it was real
        self.words_known = True  # False when no transcriber runs: no false interruptions
        # Interim words a streaming transcriber reported before the VAD's onset: they belong to
        # the burst about to start (transcribers can be quicker than the VAD).
        self._early_words = 0

    # --- inputs -------------------------------------------------------------------------------
    def speech_started(self, at_ms: float) -> None:
        if self._awaiting is not None:
            # The caller keeps talking after the clear: the interruption was real.
            self._awaiting.resolved = True
            self._awaiting = None
        self._burst = _Burst(at_ms, words=self._early_words)
        self._early_words = 0

    def speech_ended(self, at_ms: float) -> None:
        if self._burst is not None:
            self._burst.ended_ms = at_ms
            self._burst = None

    def transcript(self, text: str, final: bool) -> bool:
        """Count the caller's words. Returns True when the transcript is only backchannels
        spoken over the agent, i.e. it should not reach the dialogue."""
        words = self.content_words(text)
        target = self._burst or self._awaiting
        if target is not None:
            target.words = max(target.words, len(words))
        elif not final:
            self._early_words = max(self._early_words, len(words))
        if final:
            self._early_words = 0
        if final and self._awaiting is not None and not self._awaiting.resolved:
            if not words:
                self._awaiting.backchannel_only_final = True
                return bool(text.strip())
            self._awaiting.resolved = True  # real words: the interruption stands
            self._awaiting = None
        return False

    def content_words(self, text: str) -> list[str]:
        """The words of ``text`` that are not backchannels."""
        words = _WORD.findall(text.lower())
        joined = " ".join(words)
        if joined in self._backchannels:
            return []
        return [w for w in words if w not in self._backchannels]

    @property
    def speech_onset_ms(self) -> float | None:
        """Onset of the caller speech going on now (the barge-in reaction clock starts here)."""
        return self._burst.onset_ms if self._burst is not None else None

    # --- decisions ----------------------------------------------------------------------------
    @property
    def at_rest(self) -> bool:
        """No caller speech under way and no interruption waiting for its verdict: ``decide``
        can only say NONE (the caller's silent frames, most of a call, need no more)."""
        return self._burst is None and self._awaiting is None

    def decide(self, now_ms: float, agent_active: bool, agent_since_ms: float = 0.0) -> Verdict:
        """Called for every caller frame. ``agent_since_ms`` is when the agent's current reply
        began: speech that started before it is what the reply answers (a transcriber can
        finalise before the VAD hears the end), not an interruption of it."""
        options = self.options
        burst = self._burst
        if (
            options.enabled
            and burst is not None
            and not burst.cleared
            and agent_active
            and burst.onset_ms >= agent_since_ms
            and now_ms - burst.onset_ms >= options.guard_ms
            and burst.words >= options.min_words
        ):
            burst.cleared = True
            self._awaiting = burst if options.min_words == 0 and self.words_known else None
            return Verdict.CLEAR
        waiting = self._awaiting
        if (
            waiting is not None
            and not waiting.resolved
            and waiting.ended_ms is not None
            and self._burst is None
        ):
            window_over = now_ms - waiting.ended_ms >= options.false_interruption_ms
            if waiting.backchannel_only_final or (window_over and waiting.words == 0):
                waiting.resolved = True
                self._awaiting = None
                if options.resume_after_false_interruption:
                    return Verdict.CONTINUE
        return Verdict.NONE

    def cleared_by_dtmf(self) -> None:
        """A keypad press interrupted the agent: that is never a false interruption."""
        self._awaiting = None
