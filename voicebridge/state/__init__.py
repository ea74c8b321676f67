"""Call state that outlives one WebSocket: snapshots of a call, and where they are kept.

Plivo retries a dropped stream; the retry may land on another worker or host. A small, versioned
snapshot of what the call needs to go on (history the caller heard, turn, the unheard remainder
of the reply) is saved to a ``StateStore`` (in memory for one process, Redis for many) so the
retry resumes the conversation instead of starting a new one.
"""

from voicebridge.call.snapshot import SNAPSHOT_VERSION, CallSnapshot, PendingReply, SnapshotError
from voicebridge.state.store import MemoryStore, RedisStore, StateStore, StoreError, open_store

__all__ = [
    "SNAPSHOT_VERSION",
    "CallSnapshot",
    "MemoryStore",
    "PendingReply",
    "RedisStore",
    "SnapshotError",
    "StateStore",
    "StoreError",
    "open_store",
]
