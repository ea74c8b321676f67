"""Log lines that anyone on the network can cause, at a bounded rate.

Every slow-loris connection that times out, every bad WebSocket frame, is worth a line, until an
attacker makes ten thousand of them. ``LogThrottle`` writes the first ``burst`` lines of a kind
in each ``window_s`` and counts the rest; the next line written for that kind says how many were
left out (``suppressed``), so nothing is lost but the repetition.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class LogThrottle:
    """At most ``burst`` lines per kind (the event name) per ``window_s``."""

    def __init__(
        self,
        burst: int = 10,
        window_s: float = 10.0,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window_s = window_s
        self.time_fn = time_fn
        self.windows: dict[str, tuple[float, int, int]] = {}  # kind -> (start, written, left out)

    def allow(self, kind: str) -> int | None:
        """None: leave this line out (it is counted); else how many were left out before it."""
        now = self.time_fn()
        start, written, left_out = self.windows.get(kind, (now, 0, 0))
        if now - start >= self.window_s:
            start, written = now, 0
        if written >= self.burst:
            self.windows[kind] = (start, written, left_out + 1)
            return None
        self.windows[kind] = (start, written + 1, 0)
        return left_out

    def log(self, logger: Any, kind: str, level: str = "info", **fields: Any) -> None:
        left_out = self.allow(kind)
        if left_out is None:
            return
        if left_out:
            fields["suppressed"] = left_out
        getattr(logger, level)(kind, **fields)
