"""When to leave a voicemail: after the machine's beep, or once its greeting has gone quiet.

A pure decision, driven by the caller's audio and the times it is given (no clock of its own),
so it runs the same on the wire and on a virtual clock in tests. A message spoken into a
greeting is lost, and one spoken over a person is rude, so it speaks only into quiet: right
after a beep (the machine is recording), or after ``silence_s`` without sound once the greeting
has been heard, or, when no greeting is ever heard, after ``beep_wait_s`` of quiet.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np

from voicebridge.audio._pcm import PCM
from voicebridge.audio.beep import BeepDetector

# Louder than this (RMS) is sound: a greeting, a person, music. -45 dBFS.
SOUND_RMS: Final = 32768 * 10 ** (-45 / 20)

Decision = Literal["wait", "speak"]


class VoicemailTiming:
    """Feed every chunk of the callee's audio with ``audio``; ``decide`` says when to speak.

    After the first ``"speak"`` it says ``"wait"`` forever: the message is spoken once.
    """

    def __init__(self, sample_rate: int, *, beep_wait_s: float, silence_s: float) -> None:
        self.beeps = BeepDetector(sample_rate)
        self.rate = sample_rate
        self.beep_wait_s = beep_wait_s
        self.silence_s = silence_s
        self.started_at: float | None = None
        self.heard_sound = False
        self.quiet_since: float | None = None
        self.beep_end: float | None = None
        self.reason: str | None = None  # "beep", "silence" or "timeout" once decided
        self._spoken = False

    def audio(self, pcm: PCM, at_s: float) -> None:
        """A chunk of the callee's audio starting ``at_s`` seconds into the stream."""
        if self.started_at is None:
            self.started_at = at_s
        end_s = at_s + len(pcm) / self.rate
        if self.beep_end is None and self.beeps.feed(pcm):
            self.beep_end = end_s
        rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0
        if rms >= SOUND_RMS:
            self.heard_sound = True
            self.quiet_since = None
        elif self.quiet_since is None:
            self.quiet_since = at_s

    def decide(self, now_s: float) -> Decision:
        if self._spoken or self.started_at is None:
            return "wait"
        if self.quiet_since is None:  # sound now: never speak over it
            return "wait"
        if self.beep_end is not None:
            return self._speak("beep")
        if self.heard_sound and now_s - self.quiet_since >= self.silence_s:
            return self._speak("silence")
        if not self.heard_sound and now_s - self.started_at >= self.beep_wait_s:
            return self._speak("timeout")
        return "wait"

    def _speak(self, reason: str) -> Decision:
        self._spoken = True
        self.reason = reason
        return "speak"
