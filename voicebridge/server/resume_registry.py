"""Calls whose socket dropped, kept resumable for a grace period; the state hooks of sessions.

Plivo retries a failed stream twice. When a socket goes away mid-call (no ``stop``, not ended by
us, not a normal close) the session is suspended instead of ended: its snapshot is kept here and
saved to the state store, and a timer finalises the call (``socket_lost``) if nobody came back
within ``grace_s``. A new ``start`` for the same call id takes the snapshot, here or from the
store when another worker held the call; a claim in the store makes sure only one party (the
resumer or the finaliser) acts on each dropped stream.

With a shared store, live calls are also saved on turn boundaries and acknowledgements, in the
background and coalesced, so a call survives its worker dying. Saving never blocks audio: a
store that is down costs a log line and a counter; saving resumes when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import uuid
from dataclasses import dataclass

import structlog

from voicebridge.call.snapshot import CallSnapshot
from voicebridge.clock import Clock, MonotonicClock
from voicebridge.session import CloseCode, Session
from voicebridge.state.store import MemoryStore, StateStore, StoreError

log = structlog.get_logger("voicebridge.call.continuation")

# A live call's snapshot outlives its last save this long: the window in which a call whose
# worker died can still be resumed elsewhere. A normal end deletes it.
LIVE_TTL_S = 600.0
# A suspended call's snapshot outlives the grace period by this much; the finaliser deletes it.
SUSPENDED_SLACK_S = 5.0
# A reconnect that finds only a live snapshot waits this long for the worker that held the call
# to notice the drop and save the exact one; past it, that worker is taken for dead.
HANDOVER_WAIT_S = 1.0
HANDOVER_POLL_S = 0.05
# A live snapshot that could not be saved is tried again this long (call time) later.
SAVE_RETRY_S = 1.0


@dataclass
class _Dropped:
    snapshot: CallSnapshot
    timer: asyncio.Task[None] | None = None


@dataclass
class _Saver:
    dirty: bool = False
    saved: bool = False
    task: asyncio.Task[None] | None = None


@dataclass
class ResumeStats:
    suspended: int = 0
    resumed: int = 0
    finalised: int = 0
    resumed_elsewhere: int = 0
    claim_lost: int = 0
    store_errors: int = 0
    saves: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if isinstance(v, int)}


class ResumeRegistry:
    """The service's dropped calls and its state store. One per worker process."""

    def __init__(
        self,
        store: StateStore | None = None,
        *,
        grace_s: float = 10.0,
        clock: Clock | None = None,
        worker: str | None = None,
    ) -> None:
        self.store: StateStore = store or MemoryStore()
        self.grace_s = grace_s
        self.clock: Clock = clock or MonotonicClock()
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stats = ResumeStats()
        self.saved = asyncio.Event()  # set at each live snapshot saved (tests wait on it)
        self.finalised: list[tuple[str, str]] = []  # (call id, reason), newest last, bounded
        self._dropped: dict[str, _Dropped] = {}
        self._live: dict[str, Session] = {}
        self._savers: dict[Session, _Saver] = {}
        # Saving live calls only helps when another process can read the store.
        self._save_live = not isinstance(self.store, MemoryStore)

    @property
    def enabled(self) -> bool:
        return self.grace_s > 0

    def __len__(self) -> int:
        """Calls suspended here, waiting for Plivo to reconnect."""
        return len(self._dropped)

    def snapshot(self, call_id: str) -> CallSnapshot | None:
        """The snapshot of a call suspended here, if any."""
        dropped = self._dropped.get(call_id)
        return dropped.snapshot if dropped is not None else None

    def grace_timer(self, call_id: str) -> asyncio.Task[None] | None:
        """The task that finalises a dropped call when its grace period ends (tests await it)."""
        dropped = self._dropped.get(call_id)
        return dropped.timer if dropped is not None else None

    def _claim_key(self, snapshot: CallSnapshot) -> str:
        # Per stream, not per call: a call id seen again later (a retry after the grace period
        # starts a new call) must not find its new streams already claimed.
        return f"{snapshot.call_id}:{snapshot.epoch}:{snapshot.stream_token}"

    @property
    def _claim_ttl(self) -> float:
        return max(60.0, 3 * (self.grace_s + SUSPENDED_SLACK_S))

    # --- StateHooks -----------------------------------------------------------------------
    async def on_start(self, session: Session, call_id: str) -> CallSnapshot | None:
        if not self.enabled:
            return None
        old = self._live.get(call_id)
        if old is not None and old is not session and not old.ended.is_set():
            # A live call is handed over only by proof (``server.call_legs``), never because
            # another start arrived: this leg gets no snapshot and the live one is untouched.
            session.log.warning("second_leg_not_resumed")
            return None
        self._live[call_id] = session
        snapshot = await self._take(call_id)
        if snapshot is not None:
            self.stats.resumed += 1
        return snapshot

    def changed(self, session: Session) -> None:
        if not self._save_live or not self.enabled or session.ctx is None:
            return
        saver = self._savers.setdefault(session, _Saver())
        saver.dirty = True
        if saver.task is None or saver.task.done():
            saver.task = asyncio.get_running_loop().create_task(self._save_live_loop(session))

    async def _save_live_loop(self, session: Session) -> None:
        saver = self._savers.get(session)
        while saver is not None and saver.dirty and not session.ended.is_set():
            saver.dirty = False
            snapshot = session.snapshot()
            if snapshot is None:
                return
            try:
                await self.store.save(snapshot.call_id, snapshot, LIVE_TTL_S)
                saver.saved = True
                self.stats.saves += 1
                self.saved.set()
            except StoreError as exc:
                self.stats.store_errors += 1
                session.log.debug("snapshot_save_failed", error=str(exc)[:200])
                # The state is still unsaved: try again a second of call time later, so saving
                # resumes by itself when the store comes back (not only at the next change).
                saver.dirty = True
                await session.clock.sleep(SAVE_RETRY_S)

    # --- the socket went away -------------------------------------------------------------
    async def closed(self, session: Session, close_code: int | None) -> None:
        """A session's socket is gone: suspend the call if Plivo may come back, else end it."""
        if self.enabled and session.suspendable(close_code):
            await self.suspend(session, close_code=close_code)
            return
        await session.end(session.end_reason or "socket_closed")
        saver = self._stop_saver(session)
        call_id = session.ctx.info.call_id if session.ctx else ""
        if self._live.get(call_id) is session:
            del self._live[call_id]
            if saver is not None and saver.saved and call_id not in self._dropped:
                with contextlib.suppress(StoreError):
                    await self.store.delete(call_id)

    async def suspend(self, session: Session, *, close_code: int | None = None) -> None:
        """Keep the call resumable for ``grace_s``: snapshot it, end its pipeline, save it."""
        snapshot = session.snapshot()
        session.state_hooks = None  # nothing it does from now on is the call's state
        self._stop_saver(session)
        if snapshot is None:
            await session.end("suspended", code=CloseCode.GOING_AWAY)
            return
        snapshot = dataclasses.replace(snapshot, suspended=True)
        call_id = snapshot.call_id
        if self._live.get(call_id) is session:
            del self._live[call_id]
        dropped = _Dropped(snapshot)
        self._dropped[call_id] = dropped
        dropped.timer = asyncio.get_running_loop().create_task(
            self._expire(call_id, snapshot.epoch), name=f"resume-grace-{call_id[:16]}"
        )
        self.stats.suspended += 1
        session.log.info(
            "call_suspended",
            close_code=close_code,
            grace_s=self.grace_s,
            epoch=snapshot.epoch,
            turn=snapshot.turn,
            pending=snapshot.pending_text[:200],
        )
        # Saved while the pipeline stops: a retry on another worker is waiting for it.
        saving = asyncio.get_running_loop().create_task(
            self.store.save(call_id, snapshot, self.grace_s + SUSPENDED_SLACK_S)
        )
        await session.end("suspended", code=CloseCode.GOING_AWAY, close_reason="stream replaced")
        try:
            await saving
        except StoreError as exc:
            # Only this worker can resume the call now; it still can.
            self.stats.store_errors += 1
            session.log.warning("snapshot_save_failed", error=str(exc)[:200], suspended=True)

    async def _take(self, call_id: str) -> CallSnapshot | None:
        dropped = self._dropped.pop(call_id, None)
        if dropped is not None:
            if dropped.timer is not None:
                dropped.timer.cancel()
            snapshot: CallSnapshot | None = dropped.snapshot
        else:
            snapshot = await self._load_for_resume(call_id)
        if snapshot is None:
            return None
        try:
            won = await self.store.claim(self._claim_key(snapshot), self.worker, self._claim_ttl)
        except StoreError as exc:
            # Without the store nobody else can read the snapshot either: a local copy is ours.
            self.stats.store_errors += 1
            won = dropped is not None
            log.warning("resume_claim_failed", call_id=call_id[:64], error=str(exc)[:200])
        if not won:
            self.stats.claim_lost += 1
            log.info("resume_claimed_elsewhere", call_id=call_id[:64], epoch=snapshot.epoch)
            return None
        with contextlib.suppress(StoreError):
            await self.store.delete(call_id)
        return snapshot

    async def _load_for_resume(self, call_id: str) -> CallSnapshot | None:
        """The stored snapshot, preferring the one saved at the drop over a live one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HANDOVER_WAIT_S
        while True:
            try:
                snapshot = await self.store.load(call_id)
            except StoreError as exc:
                self.stats.store_errors += 1
                log.warning("snapshot_load_failed", call_id=call_id[:64], error=str(exc)[:200])
                return None
            if snapshot is None or snapshot.suspended or loop.time() >= deadline:
                return snapshot
            # Another worker still holds the call: Plivo came back before it saw the drop.
            await asyncio.sleep(HANDOVER_POLL_S)

    async def _expire(self, call_id: str, epoch: int) -> None:
        await self.clock.sleep(self.grace_s)
        dropped = self._dropped.get(call_id)
        if dropped is None or dropped.snapshot.epoch != epoch:
            return
        del self._dropped[call_id]
        try:
            won = await self.store.claim(
                self._claim_key(dropped.snapshot), self.worker, self._claim_ttl
            )
        except StoreError:
            self.stats.store_errors += 1
            won = True  # the snapshot's own expiry cleans the store
        bound = log.bind(call_id=call_id, stream_id=dropped.snapshot.stream_id)
        if not won:
            self.stats.resumed_elsewhere += 1
            bound.info("call_resumed_elsewhere", epoch=epoch)
            return
        with contextlib.suppress(StoreError):
            await self.store.delete(call_id)
        self._finalise(call_id, "socket_lost")
        bound.info("call_ended", reason="socket_lost", grace_s=self.grace_s, epoch=epoch)

    def _finalise(self, call_id: str, reason: str) -> None:
        self.stats.finalised += 1
        self.finalised.append((call_id, reason))
        del self.finalised[:-100]

    def _stop_saver(self, session: Session) -> _Saver | None:
        saver = self._savers.pop(session, None)
        if saver is not None and saver.task is not None:
            saver.task.cancel()
        return saver

    # --- shutting down --------------------------------------------------------------------
    async def close(self) -> None:
        """Stop timers and savers. With a shared store, suspended calls stay resumable by other
        workers until their snapshot expires; with memory, they end here."""
        for session in list(self._savers):
            self._stop_saver(session)
        for call_id, dropped in list(self._dropped.items()):
            if dropped.timer is not None:
                dropped.timer.cancel()
            if isinstance(self.store, MemoryStore):
                self._finalise(call_id, "service_stopping")
                log.info("call_ended", call_id=call_id[:64], reason="service_stopping")
        self._dropped.clear()
        await self.store.close()
