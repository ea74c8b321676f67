"""Fair share of one call: caller audio may not run ahead of real time by more than a burst.

Plivo streams caller audio in real time (20 ms every 20 ms). A peer that streams faster makes
every stage do that much more work, at the expense of every other call. So the audio a call
takes is held to the time its clock says has passed since ``start``, plus ``burst_s`` for
jitter and for a stalled network catching up (a backlog never runs ahead of real time: it was
recorded in it). Frames beyond that are dropped and counted; ``flood_s`` of dropped audio
closes the socket.

On a ``StreamClock`` (the simulator, tests) the clock follows the audio, so a fast caller is
never held back: this compares against whatever clock the call runs on.
"""

from __future__ import annotations


class FairShare:
    """Decides, frame by frame, whether caller audio is within real time; counts the rest."""

    __slots__ = ("burst_ms", "dropped", "dropped_ms", "flood_ms", "reported_at", "unreported")

    def __init__(self, burst_s: float, flood_s: float) -> None:
        self.burst_ms = burst_s * 1000.0
        self.flood_ms = flood_s * 1000.0
        self.dropped = 0  # frames, over the call
        self.dropped_ms = 0.0  # audio, over the call
        self.unreported = 0  # frames dropped since the last ``FramesDropped``
        self.reported_at: float | None = None

    def admits(self, received_ms: float, elapsed_s: float) -> bool:
        """Whether a frame after ``received_ms`` of audio is taken ``elapsed_s`` after start.
        The audio before it is compared, so a call never loses its first frame to its size."""
        return received_ms <= elapsed_s * 1000.0 + self.burst_ms

    def drop(self, ms: float) -> bool:
        """Count a dropped frame of ``ms``; True when the drops amount to a sustained flood."""
        self.dropped += 1
        self.unreported += 1
        self.dropped_ms += ms
        return self.dropped_ms >= self.flood_ms

    def report(self, now: float, every_s: float = 1.0) -> int:
        """Frames to report as dropped now: at most one report per ``every_s`` (0: report
        whatever is left, e.g. at the end)."""
        if not self.unreported:
            return 0
        if every_s and self.reported_at is not None and now - self.reported_at < every_s:
            return 0
        count, self.unreported, self.reported_at = self.unreported, 0, now
        return count
