"""A call core's public snapshot for resuming a dropped call, and restoring one.

(A dropped socket that Plivo reconnects: not to be confused with continuing after a false
interruption, ``voicebridge.call.continuation``.)

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
from voicebridge.frames import Hangup, Transfer

if TYPE_CHECKING:
    from voicebridge.call.state import CallState


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


def live_entries(core: CallState) -> list[int]:
    """History entries whose reply is still owed to the caller: begun, not finished, not cut off
    by a barge-in (or continued after a false interruption by a turn that is itself live)."""
    turns, book = core.turns, core.book
    alive = {e for m, e in book.respoken.items() if not turns.is_stale(m)}
    return sorted(
        turn
        for turn in book.text
        if turn not in book.done and (not turns.is_stale(turn) or turn in alive)
    )


def take(core: CallState, t: float, *, epoch: int) -> CallSnapshot | None:
    """The core's resumable state at call time ``t``. ``epoch`` numbers the call's streams
    (0 for the first): each one's snapshot is claimed once, by the worker that resumes it or by
    the one that finalises it."""
    ctx = core.ctx
    if ctx is None:
        return None
    extra = heard_so_far(core.ledger.pending, t)
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
    for turn in live_entries(core):
        words = " ".join(core.book.text[turn]).split()
        rest = words[len(heard_text.get(turn, "").split()) :]
        if rest:
            pending.append(PendingReply(turn, " ".join(rest)))
    action = core.pending_action
    info = ctx.info
    return CallSnapshot(
        call_id=info.call_id,
        stream_id=info.stream_id,
        account_id=info.account_id,
        encoding=info.encoding,
        sample_rate=info.sample_rate,
        extra_headers=dict(info.extra_headers),
        epoch=epoch,
        stream_token=core.stream_token,
        turn=core.turns.begun,
        stale_through=core.turns.stale_through,
        completed_turn=core.turns.completed_through,
        history=history,
        pending=pending,
        action=(
            PendingAction("hangup", reason=action.reason)
            if isinstance(action, Hangup)
            else PendingAction("transfer", reason=action.reason, to=action.to)
            if isinstance(action, Transfer)
            else None
        ),
        reprompts=core.reprompts,
        elapsed_s=max(0.0, core.elapsed_before + t),
        saved_at=time.time(),  # wall-clock: it must mean the same on another host
        resumes=core.reconnects,
        state=json_safe(ctx.state),
    )


def restore(core: CallState, snapshot: CallSnapshot, wall_now: float) -> None:
    """Put a snapshot's conversation into a core whose context was just opened."""
    ctx = core.ctx
    assert ctx is not None, "open_context() first"
    ctx.history = [HistoryEntry(h.role, h.text, h.turn, h.interrupted) for h in snapshot.history]
    core.turns.restore(snapshot.turn, snapshot.stale_through)
    ctx.state.update(snapshot.state)
    core.reprompts = snapshot.reprompts
    core.elapsed_before = snapshot.elapsed_s + max(0.0, wall_now - snapshot.saved_at)
    core.epoch = snapshot.epoch + 1  # a new stream: its own snapshots, its own claim
    core.reconnects = snapshot.resumes + 1
