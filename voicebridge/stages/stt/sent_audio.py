"""Where a provider's result times fall in the call: offsets into one stream, mapped to stream ms.

A streaming recogniser times its results from the first audio of *its* stream, counting only the
audio it was sent. The call counts stream ms from its first caller frame (the VAD's clock, the
``at_ms`` of its frames). The two differ by where the stream started (a stream opens on the
first audio, reopens after a drop, restarts before a provider's time limit) and by every gap in
what was sent (audio dropped while a slow stream could not take it). :class:`SentAudio` records
each piece of audio as it goes out and maps a provider offset back to the stream ms of the audio
that was at that offset. One per provider stream; sans-I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

__all__ = ["SentAudio"]

_MAX_SPANS = 256  # a new span per gap; the oldest go first (results are about recent audio)
_CONTIGUOUS_MS = 0.5  # timestamps this close continue the same span


class SentAudio:
    """The audio one stream was sent, as spans of contiguous call audio."""

    def __init__(self) -> None:
        self._offsets: deque[float] = deque(maxlen=_MAX_SPANS)  # provider offset of each span
        self._starts: deque[float] = deque(maxlen=_MAX_SPANS)  # its stream ms
        self._sent_ms = 0.0
        self._next_ms: float | None = None  # stream ms that would continue the last span

    @property
    def sent_ms(self) -> float:
        """Audio sent on this stream so far: the provider's clock, in ms."""
        return self._sent_ms

    @property
    def first_ms(self) -> float | None:
        """Stream ms of the first audio still mapped (None: nothing sent yet)."""
        return self._starts[0] if self._starts else None

    def sent(self, stream_ms: float, duration_ms: float) -> None:
        """``duration_ms`` of call audio that began at ``stream_ms`` went out, after all before."""
        if self._next_ms is None or abs(stream_ms - self._next_ms) > _CONTIGUOUS_MS:
            self._offsets.append(self._sent_ms)
            self._starts.append(stream_ms)
        self._sent_ms += duration_ms
        self._next_ms = stream_ms + duration_ms

    def stream_ms(self, offset_ms: float) -> float:
        """The stream ms of the audio at ``offset_ms`` into this stream (a time before the
        oldest span kept, or before any audio, counts on from the oldest span)."""
        if not self._offsets:
            return offset_ms
        i = max(bisect_right(self._offsets, offset_ms) - 1, 0)
        return self._starts[i] + (offset_ms - self._offsets[i])
