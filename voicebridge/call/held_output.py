"""Holding the agent's audio back, then letting it out: an outbound call that waits for Plivo's
machine detection before its greeting is heard.

While held, agent audio is made and queued as usual but nothing is sent, and the agent counts as
silent: the callee speaking is no barge-in (there is nothing to interrupt), so a greeting made
early is kept for the moment it may be spoken. A machine gets nothing of it: ``silence_agent``
drops every turn's audio, and ``say_only`` speaks one turn (the voicemail) while any other
turn's audio is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from voicebridge.call.actions import Interrupt
from voicebridge.call.interruptions import Interruptions
from voicebridge.call.state import Out
from voicebridge.frames import Hangup
from voicebridge.plivo import messages


class HeldOutput(Interruptions):
    """Hold, release and silence the agent's audio; speak one turn only."""

    def hold_output(self) -> None:
        """Queue agent audio, send none of it, until ``release_output``."""
        self.output_held = True

    def release_output(self, now: float) -> Sequence[Out]:
        """Send what was held, paced as usual, and whatever comes next."""
        self.output_held = False
        if self.outbox:
            self._pump(now)
        return self._take()

    def silence_agent(self, now: float) -> Sequence[Out]:
        """Drop the agent's audio, queued or playing, and cancel the turns in the making."""
        if self.ctx is None or self.outbox is None or self.ending:
            return self._take()
        t = self.call_time(now)
        self._out.append(Interrupt(self.turns.invalidate()))
        self.outbox.drop_all()
        cleared = self.ledger.clear(t)
        for piece in cleared.played:
            self._piece_played(piece, t)
        if cleared.cleared or cleared.interrupted is not None:
            self._send(messages.clear_audio(self.ctx.info.stream_id))
        self.replies.cleared()
        self._sent_audio.clear()
        self._interrupted = []
        return self._take()

    def say_only(self, text: str, now: float, *, then: Hangup | None = None) -> Sequence[Out]:
        """Silence the agent, then speak ``text`` as the only turn heard from now on."""
        self.silence_agent(now)
        turn = self._say(text, now, then=then)
        if turn is not None:
            self.only_turn = turn
            self.output_held = False
        return self._take()
