"""A streaming transcriber's words at the VAD's pause, handed to the VAD's end-of-turn decision.

The wiring ``transcribe`` and ``google_stt`` share (``early_words``): the VAD's edges and the
provider's results go into a :class:`~voicebridge.stages.stt.pause_words.PauseWords`, and the
words it hands back for a pause are published on the call's
:class:`~voicebridge.stages.end_of_turn.words.EarlyWords` channel while someone listens. The
stage only says what its provider's results are (a ``Heard`` each, in stream ms).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from voicebridge.call.context import CallContext
from voicebridge.stages.end_of_turn.words import EarlyWords
from voicebridge.stages.stt.pause_words import DEFAULT_SLACK_MS, Heard, PauseWords


def early_words_field() -> Any:
    """The ``early_words`` parameter."""
    return Field(
        True,
        description="pass the words at the VAD's pause to its end-of-turn decision (text_cues), "
        "once a result reaches the pause",
    )


def slack_field() -> Any:
    """The ``early_words_slack_ms`` parameter."""
    return Field(
        int(DEFAULT_SLACK_MS),
        ge=0,
        le=500,
        description="a result's last word (or a final without word times) ending this long "
        "before the VAD's pause still reaches it",
    )


class PauseWordsFeed:
    """One stage's :class:`PauseWords`, and where its words go."""

    def __init__(self, enabled: bool, slack_ms: float) -> None:
        self.enabled = enabled
        self.words = PauseWords(slack_ms)
        self._channel: EarlyWords | None = None
        self._log: Any = None

    @property
    def results(self) -> int:
        """Provider results taken in (tests wait on it)."""
        return self.words.results

    def start(self, ctx: CallContext, log: Any) -> None:
        """At the call's start: tell the end-of-turn decision that words will come."""
        if self.enabled:
            self._channel = EarlyWords.of(ctx)
            self._channel.announce()
        self._log = log

    # --- the VAD's edges ----------------------------------------------------------------------
    def speech_started(self, at_ms: float) -> None:
        self.words.speech_started(at_ms)

    def paused(self, since_ms: float) -> None:
        self._publish(self.words.paused(since_ms))

    def speech_ended(self) -> None:
        self.words.speech_ended()

    # --- the provider's results ---------------------------------------------------------------
    def result(self, heard: Heard) -> None:
        self._publish(self.words.result(heard))

    def _publish(self, words: tuple[float, str] | None) -> None:
        channel = self._channel
        if words is None or channel is None or not channel.wanted:
            return
        since_ms, text = words
        self._log.debug("stt_early_words", since_ms=round(since_ms), chars=len(text))
        channel.publish(since_ms, text)
