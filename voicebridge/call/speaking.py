"""The agent's side of a call core: reply text seen, audio paced out with its checkpoints, and
what the caller heard settled into the history as Plivo acknowledges it.
"""

from __future__ import annotations

from collections.abc import Sequence

from voicebridge.call.actions import Push, SaveState
from voicebridge.call.events import (
    AgentAudioSent,
    AgentSaid,
    CheckpointSent,
    PiecePlayed,
    RemainderUnspoken,
    TurnCompleted,
)
from voicebridge.call.ledger import Piece
from voicebridge.call.snapshot import CallSnapshot
from voicebridge.call.state import CallState, Out
from voicebridge.frames import AgentAudio, AgentText, Hangup, Transfer
from voicebridge.plivo import messages
from voicebridge.text import split_sentences


class Speaking(CallState):
    """Sending agent audio and settling what was heard."""

    # --- reply text -------------------------------------------------------------------------------
    def _agent_text(self, frame: AgentText, now: float) -> None:
        self.turns.seen(frame.turn, self.stream_ms)
        self.book.add_text(frame.turn, frame.text)
        self.turns.mark(frame.turn, "first_text_s", self.call_time(now))
        self.replies.agent_text(frame.turn, frame.text, frame.last)
        self._emit(AgentSaid(self._t(), frame.turn, frame.text, frame.last))

    def _spoken_text(self, frame: AgentAudio, now: float) -> None:
        """A reply whose audio came without text frames before it (a speech-to-speech model
        speaks and transcribes itself): its pieces' text is the reply's text."""
        turn = frame.turn
        if turn > self.turns.newest_seen:
            self._speakerless.add(turn)
        elif turn not in self._speakerless:
            return
        if frame.text or frame.last:
            self._agent_text(AgentText(frame.text, turn=turn, last=frame.last), now)
        if frame.last:
            self._speakerless.discard(turn)

    # --- sending and settling ---------------------------------------------------------------------
    def _pump(self, now: float) -> None:
        """Send what pacing allows now."""
        outbox, encoder, ctx = self.outbox, self._encoder, self.ctx
        if outbox is None or encoder is None or ctx is None or self.ending or self.output_held:
            return
        t = self.call_time(now)
        for send in outbox.due(t):
            if send.started is not None and send.piece is not None:
                started = send.started
                self._sent_audio[send.piece.name] = started  # kept for a continuation
                self.turns.mark(started.turn, "first_sent_s", t)
                self.replies.audio_sent(started.turn, t, started.duration_ms / 1000)
            if send.payload is not None:
                if self._want_agent_audio:
                    self._emit(AgentAudioSent(self._t(), send.payload, t))
                self._send(encoder.encode(send.payload))
            elif send.checkpoint is not None:
                piece = send.checkpoint
                if piece.last:
                    self.turns.sent(piece.turn)
                self._send(messages.checkpoint(ctx.info.stream_id, piece.name))
                self._emit(
                    CheckpointSent(
                        self._t(),
                        piece.name,
                        piece.turn,
                        piece.text,
                        round(piece.duration_ms / 1000.0, 3),
                    )
                )

    def _piece_played(self, piece: Piece, t: float) -> None:
        self._emit(PiecePlayed(self._t(), piece.name, piece.turn, piece.text))
        self._sent_audio.pop(piece.name, None)
        if piece.index == 1:
            self.turns.mark(piece.turn, "first_played_s", max(0.0, t - piece.duration_ms / 1000))
        if self.ctx is not None:
            self.ctx.heard_audio.played(piece.turn, piece.duration_ms)
        self._record_heard(piece)
        if piece.last:
            self._turn_done(piece.turn, t)
        self._out.append(SaveState())

    def _turn_done(self, turn: int, t: float) -> None:
        self._last_activity_s = t
        self.book.finished(turn)
        timing = self.turns.finish(turn, t).as_dict()
        self.turns.forget_before(turn - 8)
        self.replies.forget_before(turn - 8)
        self.ledger.forget_turns_through(turn - 2)
        if self.ctx is not None:
            self.ctx.heard_audio.forget_before(turn - 8)
        self._speakerless = {t for t in self._speakerless if t > turn - 8}
        self._emit(TurnCompleted(self._t(), turn, timing))

    def _record_heard(self, piece: Piece) -> None:
        if self.ctx is None or not piece.heard_text or self.replies.is_filler(piece.turn):
            return
        entry = self.ctx.agent_entry(piece.entry_turn)
        entry.text = f"{entry.text} {piece.heard_text}".strip()
        if piece.history_turn is not None and piece.last:
            entry.interrupted = False  # a false interruption, continued to the end

    # --- the agent speaking on its own ------------------------------------------------------------
    def say(
        self, text: str, now: float, *, then: Hangup | None = None, direct: bool = False
    ) -> Sequence[Out]:
        """Speak ``text`` through the pipeline's speaker as a new turn (nothing without one).
        ``direct`` hands it to the speaker stage itself, past a dialogue that may be busy."""
        self._say(text, now, then=then, direct=direct)
        return self._take()

    def _say(
        self,
        text: str,
        now: float,
        *,
        then: Hangup | None = None,
        direct: bool = False,
        filler: bool = False,
    ) -> int | None:
        """Queue ``text`` as a new turn; its number, or None when nothing can speak. A
        ``filler`` answers nothing: it is marked so before its text is seen, so it neither
        takes the caller's end of speech from the real reply nor enters the history."""
        if self.ctx is None or not self.can_speak or self.ending:
            return None
        role = "tts" if direct else None
        pieces = split_sentences(text)
        turn = self.turns.begin()
        if filler:
            self.replies.filler_started(turn)
            self.turns.aside(turn)
        for index, piece in enumerate(pieces):
            frame = AgentText(piece, turn=turn, last=index == len(pieces) - 1)
            self._agent_text(frame, now)  # made here: no stage reports it
            self._out.append(Push(frame, role))
        if then is not None:
            self._out.append(Push(then, role))
        return turn

    def _respeak(self, snapshot: CallSnapshot, now: float) -> list[str]:
        """Queue the unheard remainder of each pending reply as a new turn, then any hang-up
        or transfer that was waiting for it. Returns the texts queued."""
        ctx = self.ctx
        assert ctx is not None
        said: list[str] = []
        if self.can_speak:
            for reply in snapshot.pending:
                pieces = split_sentences(reply.text)
                if not pieces:
                    continue
                turn = self.turns.begin()
                self.book.respoken[turn] = reply.turn
                heard = ctx.agent_entry(reply.turn).text
                self.book.text[reply.turn] = [f"{heard} {reply.text}".strip()]
                for index, piece in enumerate(pieces):
                    frame = AgentText(piece, turn=turn, last=index == len(pieces) - 1)
                    self._agent_text(frame, now)
                    self._out.append(Push(frame))
                said.append(reply.text)
        elif snapshot.pending:
            self._emit(RemainderUnspoken(self._t(), snapshot.pending_text[:200]))
        action = snapshot.action
        if action is not None:
            self._out.append(
                Push(
                    Hangup(reason=action.reason)
                    if action.kind == "hangup"
                    else Transfer(to=action.to, reason=action.reason)
                )
            )
        return said
