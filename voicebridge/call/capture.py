"""Taking a live session's snapshot, and building a new session from one.

What the caller heard is the ledger's word: acknowledged pieces, plus for pieces whose ack never
came (the socket died) the ledger's estimate of playout, cut at a word boundary as a barge-in
would. The pending reply is the text the dialogue produced for a live turn minus the words heard,
so a resumed call re-speaks exactly the unheard remainder: nothing heard is said twice.

Re-speaking text (through the pipeline's own speaker) rather than re-sending kept audio is a
choice: the snapshot stays a few kilobytes of JSON that any worker on any host can load, text
not yet synthesised when the socket dropped is covered too, and the cost is one speech request
for the remainder. Pipelines without a speaker keep history and turn but cannot re-speak.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from voicebridge.call.context import HistoryEntry
from voicebridge.call.ledger import Piece, words_heard
from voicebridge.call.snapshot import (
    CallSnapshot,
    HistoryItem,
    PendingAction,
    PendingReply,
    json_safe,
)
from voicebridge.frames import AgentText, Hangup, Transfer
from voicebridge.text import split_sentences

if TYPE_CHECKING:
    from voicebridge.session import Session


def heard_so_far(pieces: list[Piece], now: float) -> dict[int, str]:
    """Words of unacknowledged pieces the caller heard by estimate, per history entry."""
    heard: dict[int, list[str]] = {}
    for piece in pieces:
        if piece.checkpointed and piece.ends_at <= now:
            text = piece.text
        elif piece.starts_at <= now < piece.ends_at:
            text = words_heard(piece, now)
        else:
            continue
        if text:
            heard.setdefault(piece.entry_turn, []).append(text)
    return {turn: " ".join(parts) for turn, parts in heard.items()}


def live_entries(session: Session) -> list[int]:
    """History entries whose reply is still owed to the caller: begun, not finished, not cut off
    by a barge-in (or resumed after a false interruption by a turn that is itself live)."""
    ctx = session.ctx
    if ctx is None:
        return []
    alive = {e for m, e in session._respoken.items() if not ctx.is_stale(m)}
    return sorted(
        turn
        for turn in session._reply_text
        if turn not in session._done_entries and (not ctx.is_stale(turn) or turn in alive)
    )


def capture(session: Session, *, epoch: int) -> CallSnapshot | None:
    # ``epoch`` numbers the call's streams (0 for the first): each one's snapshot is claimed
    # once, by the worker that resumes it or by the one that finalises it.
    """The session's resumable state now, as if its socket dropped this instant."""
    ctx = session.ctx
    if ctx is None:
        return None
    now = session._now()
    extra = heard_so_far(session.ledger.pending, now)
    history: list[HistoryItem] = []
    heard_text: dict[int, str] = {}
    for entry in ctx.history:
        text = entry.text
        if entry.role == "agent" and entry.turn is not None and entry.turn in extra:
            text = f"{text} {extra.pop(entry.turn)}".strip()
            heard_text[entry.turn] = text
        elif entry.role == "agent" and entry.turn is not None:
            heard_text[entry.turn] = text
        history.append(HistoryItem(entry.role, text, entry.turn, entry.interrupted))
    for turn, text in sorted(extra.items()):  # first words of a reply not yet in history
        history.append(HistoryItem("agent", text, turn))
        heard_text[turn] = text
    pending: list[PendingReply] = []
    for turn in live_entries(session):
        words = " ".join(session._reply_text[turn]).split()
        rest = words[len(heard_text.get(turn, "").split()) :]
        if rest:
            pending.append(PendingReply(turn, " ".join(rest)))
    action = session._pending_action
    info = ctx.info
    return CallSnapshot(
        call_id=info.call_id,
        stream_id=info.stream_id,
        account_id=info.account_id,
        encoding=info.encoding,
        sample_rate=info.sample_rate,
        extra_headers=dict(info.extra_headers),
        epoch=epoch,
        stream_token=session._stream_token,
        turn=ctx.turn,
        stale_through=ctx.stale_through,
        completed_turn=session._completed_turn,
        history=history,
        pending=pending,
        action=(
            PendingAction("hangup", reason=action.reason)
            if isinstance(action, Hangup)
            else PendingAction("transfer", reason=action.reason, to=action.to)
            if isinstance(action, Transfer)
            else None
        ),
        reprompts=session._reprompts,
        elapsed_s=max(0.0, session._elapsed_before + now),
        saved_at=time.time(),
        resumes=session.stats.get("reconnects", 0),
        state=json_safe(ctx.state),
    )


def restore(session: Session, snapshot: CallSnapshot) -> None:
    """Put a snapshot's conversation into a session whose context was just made."""
    ctx = session.ctx
    assert ctx is not None
    ctx.history = [HistoryEntry(h.role, h.text, h.turn, h.interrupted) for h in snapshot.history]
    ctx.restore_turns(snapshot.turn, snapshot.stale_through)
    ctx.state.update(snapshot.state)
    # Every turn of the dropped stream is over here; what is owed is re-spoken as new turns.
    session._completed_turn = session._sent_turn = session._newest_turn_seen = ctx.turn
    session._reprompts = snapshot.reprompts
    session._elapsed_before = snapshot.elapsed_s + max(0.0, time.time() - snapshot.saved_at)
    session._epoch = snapshot.epoch + 1  # a new stream: its own snapshots, its own claim
    session.stats["reconnects"] = snapshot.resumes + 1


async def respeak(session: Session, snapshot: CallSnapshot) -> list[str]:
    """Speak the unheard remainder of each pending reply as a new turn, then any hang-up or
    transfer that was waiting for it. Returns the texts queued."""
    ctx, pipeline = session.ctx, session.pipeline
    assert ctx is not None and pipeline is not None
    said: list[str] = []
    if session._can_speak:
        for reply in snapshot.pending:
            pieces = split_sentences(reply.text)
            if not pieces:
                continue
            turn = ctx.begin_turn()
            session._respoken[turn] = reply.turn
            heard = ctx.agent_entry(reply.turn).text
            session._reply_text[reply.turn] = [f"{heard} {reply.text}".strip()]
            for index, piece in enumerate(pieces):
                frame = AgentText(piece, turn=turn, last=index == len(pieces) - 1)
                session._observe(frame)
                await pipeline.push(frame)
            said.append(reply.text)
    elif snapshot.pending:
        session.log.warning(
            "resume_remainder_unspoken",
            reason="the pipeline has no tts stage",
            text=snapshot.pending_text[:200],
        )
    action = snapshot.action
    if action is not None:
        await pipeline.push(
            Hangup(reason=action.reason)
            if action.kind == "hangup"
            else Transfer(to=action.to, reason=action.reason)
        )
    return said
