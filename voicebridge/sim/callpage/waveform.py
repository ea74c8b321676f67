"""Both channels of the call reduced to a min/max/RMS envelope and drawn as scalable SVG.

The envelope has a bounded number of columns however long the call, so an hour-long call makes a
page as small as a minute-long one. The SVG is drawn in column units and stretched to the lane's
width by the browser (``preserveAspectRatio="none"``): it fits any screen without being redrawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from voicebridge.frames import PCM

_F32 = npt.NDArray[np.float32]

MIN_COLUMNS: Final = 1500
MAX_COLUMNS: Final = 3000
COLUMNS_PER_SECOND: Final = 120
HEIGHT: Final = 100.0  # SVG units; the lane's CSS height sets the pixels
_BLOCK_SAMPLES: Final = 1 << 20  # envelope work per step, to bound memory on hour-long calls


def envelope(pcm: PCM, n_samples: int, columns: int) -> tuple[_F32, _F32, _F32]:
    """Per-column min, max and RMS of ``pcm`` padded with silence to ``n_samples``, in [-1, 1].

    Reshape-based: the signal is cut into ``columns`` equal blocks (the last padded), reduced
    along the block axis a bounded number of rows at a time.
    """
    per = max(1, math.ceil(n_samples / columns))
    cols = math.ceil(n_samples / per) if n_samples else 0
    lo = np.zeros(cols, np.float32)
    hi = np.zeros(cols, np.float32)
    rms = np.zeros(cols, np.float32)
    src = np.asarray(pcm, dtype=np.int16)[:n_samples]
    rows_per_block = max(1, _BLOCK_SAMPLES // per)
    for r0 in range(0, cols, rows_per_block):
        r1 = min(cols, r0 + rows_per_block)
        part = src[r0 * per : r1 * per]
        if part.size < (r1 - r0) * per:
            part = np.concatenate((part, np.zeros((r1 - r0) * per - part.size, np.int16)))
        block = part.reshape(r1 - r0, per).astype(np.float32) / 32768.0
        lo[r0:r1] = block.min(axis=1)
        hi[r0:r1] = block.max(axis=1)
        rms[r0:r1] = np.sqrt(np.mean(block * block, axis=1))
    return lo, hi, rms


@dataclass(frozen=True)
class Waves:
    """The two lanes' SVG and each side's peak level (None for a silent side)."""

    caller_svg: str
    heard_svg: str
    caller_peak_dbfs: float | None
    heard_peak_dbfs: float | None


def draw_waves(caller: PCM, heard: PCM, n_samples: int, duration_s: float) -> Waves:
    """Both lanes on one vertical scale, so a quiet agent looks quiet next to the caller."""
    n_total = max(1, n_samples)
    columns = int(min(MAX_COLUMNS, max(MIN_COLUMNS, duration_s * COLUMNS_PER_SECOND)))
    per = max(1, math.ceil(n_total / columns))
    width = n_total / per
    envelopes = [envelope(pcm, n_total, columns) for pcm in (caller, heard)]
    peaks = [float(max(hi.max(initial=0), -lo.min(initial=0))) for lo, hi, _ in envelopes]
    half = HEIGHT / 2 - 2
    scale = half / max(max(peaks), 1 / 32)  # near-silent calls are not blown up to noise
    svgs = []
    for (lo, hi, rms), key in zip(envelopes, ("caller", "heard"), strict=True):
        mid = HEIGHT / 2
        body = [f'<line x1="0" x2="{width:.3f}" y1="{mid}" y2="{mid}" class="mid"/>']
        if lo.size:
            xs = np.arange(lo.size, dtype=np.float64) + 0.5
            # Silence keeps a hairline of height, so it reads as "nothing", not "missing".
            top = np.minimum(mid - hi * scale, mid - 0.6)
            bot = np.maximum(mid - lo * scale, mid + 0.6)
            body.append(_band(xs, top, bot, "env"))
            body.append(_band(xs, mid - rms * scale, mid + rms * scale, "rms"))
        svgs.append(
            f'<svg class="wave-svg {key}" viewBox="0 0 {width:.3f} {HEIGHT:g}" '
            f'preserveAspectRatio="none" aria-hidden="true">{"".join(body)}</svg>'
        )
    levels = [20 * math.log10(p) if p > 0 else None for p in peaks]
    return Waves(svgs[0], svgs[1], levels[0], levels[1])


def _band(
    xs: npt.NDArray[np.float64],
    top: npt.NDArray[np.floating],
    bot: npt.NDArray[np.floating],
    cls: str,
) -> str:
    px = np.concatenate((xs, xs[::-1]))
    py = np.concatenate((top, bot[::-1]))
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px.tolist(), py.tolist(), strict=True))
    return f'<polygon class="{cls}" points="{points}"/>'
