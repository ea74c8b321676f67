"""The call's audio inside the page: WAV files as ``data:`` URIs, so the page stays one file.

Each side is embedded on its own (the caller, and the agent as the caller heard it) and, when it
fits, the two mixed as the call sounded. Every track is padded to the timeline's length, so a
player's ``currentTime`` is a position on the timeline as it is. Audio is what makes the page big
(16-bit PCM at the stream rate, a third more as base64), so it is embedded only within a budget;
past it the page says so and points at ``--out``, which writes the same audio as a WAV file.
"""

from __future__ import annotations

import base64
import io
import wave
from dataclasses import dataclass
from typing import Final

import numpy as np

from voicebridge.frames import PCM

AUDIO_BUDGET_BYTES: Final = 16 * 1024 * 1024
"""Raw WAV bytes the page embeds at most: about 5 min of a call at 8 kHz with all three tracks."""

_WAV_HEADER_BYTES: Final = 44


@dataclass(frozen=True)
class Track:
    """One player: ``key`` names it in the page (``call``, ``caller``, ``agent``)."""

    key: str
    label: str
    uri: str
    duration_s: float


@dataclass(frozen=True)
class Audio:
    tracks: list[Track]
    note: str  # why some or all audio was left out, or ""


def wav_bytes(pcm: PCM, rate: int) -> bytes:
    """A mono 16-bit WAV file in memory."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return out.getvalue()


def wav_uri(pcm: PCM, rate: int) -> str:
    return "data:audio/wav;base64," + base64.b64encode(wav_bytes(pcm, rate)).decode("ascii")


def _padded(pcm: PCM, n: int) -> PCM:
    src = np.asarray(pcm, dtype=np.int16)[:n]
    if src.size == n:
        return src
    out = np.zeros(n, np.int16)
    out[: src.size] = src
    return out


def mix(caller: PCM, heard: PCM) -> PCM:
    """Both sides as one track, as a listener on the line hears them (clipped, not scaled)."""
    total = caller.astype(np.int32) + heard.astype(np.int32)
    return np.clip(total, -32768, 32767).astype(np.int16)


def embed_audio(
    caller: PCM, heard: PCM, rate: int, n_samples: int, budget_bytes: int = AUDIO_BUDGET_BYTES
) -> Audio:
    """The players the budget allows: all three, both sides without the mix, or none."""
    if n_samples <= 0:
        return Audio([], "")
    per_track = _WAV_HEADER_BYTES + 2 * n_samples
    minutes = n_samples / rate / 60
    if 2 * per_track > budget_bytes:
        return Audio(
            [],
            f"The audio is not embedded: {minutes:.1f} min of call is past the page's budget of "
            f"{budget_bytes / 2**20:.0f} MiB; --out writes it as a WAV file.",
        )
    left = _padded(caller, n_samples)
    right = _padded(heard, n_samples)
    duration = n_samples / rate
    tracks = []
    note = ""
    if 3 * per_track <= budget_bytes:
        tracks.append(
            Track("call", "the call (both sides)", wav_uri(mix(left, right), rate), duration)
        )
    else:
        note = "The mixed track is left out to keep the page small; --out writes the call as a WAV."
    tracks.append(Track("caller", "caller", wav_uri(left, rate), duration))
    tracks.append(Track("agent", "agent (as the caller heard it)", wav_uri(right, rate), duration))
    return Audio(tracks, note)
