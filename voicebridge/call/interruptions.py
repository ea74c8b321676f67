"""Barge-in in a call core: clear the agent when the caller talks over it, keep what was cut
off, and continue from the first unheard word when the interruption proves false.
"""

from __future__ import annotations

from voicebridge.call.actions import Interrupt, SaveState
from voicebridge.call.barge_in import Verdict
from voicebridge.call.continuation import continue_piece, unsent_piece
from voicebridge.call.events import ActionCancelled, BargeIn, ContinuedAfterFalseInterruption
from voicebridge.call.speaking import Speaking
from voicebridge.plivo import messages


class Interruptions(Speaking):
    """The caller talking over the agent."""

    # --- barge-in ---------------------------------------------------------------------------------
    def _agent_active(self, now: float) -> bool:
        """Agent audio is unplayed or queued, or a reply is being prepared for a live turn."""
        if self.ctx is None or self.output_held:  # held: nothing heard, nothing to interrupt
            return False
        if self.ledger.has_unplayed(self.call_time(now)) or self.outbox:
            return True
        return self.turns.preparing

    def _decide_barge_in(self, now: float) -> None:
        if self.barge_in.at_rest:  # skips working out whether the agent is active
            return
        verdict = self.barge_in.decide(
            self.stream_ms, self._agent_active(now), self.turns.agent_since_ms
        )
        if verdict is Verdict.CLEAR:
            self._clear("speech", now)
        elif verdict is Verdict.CONTINUE:
            self._continue(now)

    def _clear(self, cause: str, now: float) -> None:
        """Barge-in: stop the agent now, cancel its work, settle what was heard."""
        if self.ctx is None or self.outbox is None or self.ending:
            return
        t = self.call_time(now)
        stale = self.turns.invalidate()
        self._out.append(Interrupt(stale))
        queued = self.outbox.drop_all()
        cleared = self.ledger.clear(t)
        for piece in cleared.played:
            self._piece_played(piece, t)
        self.stats.clears += 1
        onset = self.barge_in.speech_onset_ms if cause == "speech" else None
        reaction = self.stream_ms / 1000.0 - onset / 1000.0 if onset is not None else None
        self._send(messages.clear_audio(self.ctx.info.stream_id))
        self.replies.cleared()
        interrupted = cleared.interrupted
        if interrupted is not None:
            self.ctx.heard_audio.played(interrupted.turn, interrupted.heard_ms)
        if interrupted is not None and not self.replies.is_filler(interrupted.turn):
            entry = self.ctx.agent_entry(interrupted.entry_turn)
            entry.text = f"{entry.text} {interrupted.heard_text}".strip()
            entry.interrupted = True
            self.turns.interrupted(interrupted.turn)
        cut = self.turns.timings.get(interrupted.turn) if interrupted is not None else None
        # Keep what was interrupted, in case the interruption proves false.
        self._interrupted = []
        if cause == "speech":
            for piece in cleared.cleared:
                audio = self._sent_audio.get(piece.name)
                if audio is not None:
                    self._interrupted.append((piece, audio))
            self._interrupted += [(unsent_piece(f, h), f) for f, h in queued]
        self._sent_audio.clear()
        if self.pending_action is not None:
            self._emit(ActionCancelled(self._t(), type(self.pending_action).__name__.lower()))
            self.pending_action = None
        self._emit(
            BargeIn(
                self._t(),
                cause,
                [p.name for p in cleared.cleared],
                interrupted.heard_text if interrupted else None,
                reaction,
                stale,
                t,
                cut.as_dict() if cut is not None else {},
            )
        )
        self._out.append(SaveState())

    def _continue(self, now: float) -> None:
        """A false interruption: go on from the first word the caller did not hear."""
        ctx, fmt = self.ctx, self.format
        if not self._interrupted or ctx is None or self.outbox is None or fmt is None:
            return
        if self.turns.begun > self.turns.stale_through:
            # The dialogue already answered something new: the interruption was real.
            self._interrupted = []
            return
        items, self._interrupted = self._interrupted, []
        turn = self.turns.begin()
        self.book.respoken[turn] = items[0][0].entry_turn
        self.turns.seen(turn, self.stream_ms)
        resent: list[str] = []
        for position, (piece, audio) in enumerate(items):
            rest = continue_piece(piece, audio, turn, position == len(items) - 1, fmt)
            if rest is None:
                continue
            self.outbox.add(rest, history_turn=piece.entry_turn)
            resent.append(rest.text)
        self.stats.continued += 1
        self._emit(ContinuedAfterFalseInterruption(self._t(), turn, " ".join(resent)))
        self._pump(now)
