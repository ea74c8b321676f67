"""Early words: what a transcriber heard up to a pause, passed back to the end-of-turn decision.

The decision lives in the VAD, upstream of the transcriber, so words cannot reach it as frames.
A transcriber announces itself and publishes the words here, keyed by where the silence began;
the VAD subscribes when its ``text_cues`` are on. Whisper publishes its speculative transcript of
the pause; the streaming cloud transcribers publish their results once one reaches the pause by
its own timing (:mod:`voicebridge.stages.stt.pause_words`: a partial that lags the audio may miss
the last word). With no transcriber that announces, the VAD waits for no words and the silence
timer decides. One :class:`EarlyWords` per call, kept in the call context's free space for
stages; docs/custom-stages.md shows a custom transcriber using it.
"""

from __future__ import annotations

from collections.abc import Callable

from voicebridge.call.context import CallContext

__all__ = ["EarlyWords"]

Listener = Callable[[float, str], None]


class EarlyWords:
    """A per-call channel from transcribers to the end-of-turn decision."""

    KEY = "end_of_turn.early_words"

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._publishers = 0

    @classmethod
    def of(cls, ctx: CallContext) -> EarlyWords:
        """The call's channel (made on first use)."""
        channel = ctx.state.get(cls.KEY)
        if not isinstance(channel, EarlyWords):
            channel = ctx.state[cls.KEY] = cls()
        return channel

    @property
    def wanted(self) -> bool:
        """Someone listens: worth publishing."""
        return bool(self._listeners)

    @property
    def published(self) -> bool:
        """A transcriber in this call publishes early words: worth waiting for."""
        return self._publishers > 0

    def announce(self) -> None:
        """A transcriber says it will publish the words of every pause it is told about (once
        per stage, at start); without one, the decision does not wait for words."""
        self._publishers += 1

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def publish(self, silent_since_ms: float, text: str) -> None:
        """The words before the silence that began at ``silent_since_ms`` ("" for none)."""
        for listener in self._listeners:
            listener(silent_since_ms, text)
