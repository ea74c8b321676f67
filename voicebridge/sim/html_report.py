"""A one-file HTML report of a simulated call, for people: see the call rather than read it.

Both channels are drawn as waveforms on one timeline (caller on top, the agent as the caller heard
it below), with what the STT understood over the caller's speech, what the agent said over its
audio, the response latency of every turn as a bracket between them, checkpoints as bars from sent
to acknowledged, and clears and barge-ins as red lines through everything. Hovering any mark shows
its text. Below come the figures per turn and the agent's conversation history.

The file is self-contained (inline CSS and SVG, no script, no fonts or images fetched) so it can
be attached to a CI run or mailed and opened anywhere, offline. Every string from the call goes
through :func:`html.escape`: transcripts are whatever a caller said, ``<script>`` included.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from voicebridge.frames import PCM
from voicebridge.sim.report import CallReport, CheckpointReport, MarkerEvent, TurnReport

_F32 = npt.NDArray[np.float32]

PX_PER_SECOND: Final = 120.0
MIN_WIDTH_PX: Final = 900
MAX_WIDTH_PX: Final = 120_000  # past ~17 min the timeline is compressed instead of growing
MIN_COLUMNS: Final = 1500
MAX_COLUMNS: Final = 3000
_BLOCK_SAMPLES: Final = 1 << 20  # envelope work per step, to bound memory on hour-long calls
_PAD_L: Final = 10.0
_PAD_R: Final = 60.0
_CHAR_PX: Final = 6.3  # average glyph advance of the 11 px sans-serif labels
_MAX_LABEL_PX: Final = 360.0
_MAX_TABLE_ROWS: Final = 2000

_CALLER: Final = "#2563eb"
_CALLER_LIGHT: Final = "#bfdbfe"
_AGENT: Final = "#0f766e"
_AGENT_LIGHT: Final = "#99f6e4"
_RED: Final = "#dc2626"
_AMBER: Final = "#b45309"
_CHECK: Final = "#7c3aed"
_CLEARED: Final = "#ea580c"
_INK: Final = "#1f2937"
_MUTED: Final = "#6b7280"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _f(x: float) -> str:
    """Coordinates with one decimal: sub-pixel enough, and keeps the file small."""
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def _fit(text: str, px: float) -> str:
    """Shorten ``text`` with an ellipsis to about ``px`` wide; the full text is in the tooltip."""
    text = " ".join(text.split())
    room = int(px / _CHAR_PX)
    if len(text) <= room:
        return text
    return text[: room - 1].rstrip() + "…" if room >= 3 else ""


def _secs(t: float | None, digits: int = 2) -> str:
    return "\u2013" if t is None else f"{t:.{digits}f} s"


def _clock(t: float) -> str:
    """Axis labels: ``7s`` under a minute, ``1:07`` after."""
    whole = round(t)
    return f"{whole}s" if whole < 60 else f"{whole // 60}:{whole % 60:02d}"


def _envelope(pcm: PCM, n_samples: int, columns: int) -> tuple[_F32, _F32, _F32]:
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
class _Lane:
    key: str
    label: str
    top: float
    height: float

    @property
    def bottom(self) -> float:
        return self.top + self.height

    @property
    def mid(self) -> float:
        return self.top + self.height / 2


class _Timeline:
    """Lays out the lanes and emits the timeline SVG as a list of string parts."""

    def __init__(self, report: CallReport, caller: PCM, heard: PCM, rate: int) -> None:
        self.report = report
        self.rate = rate
        self.caller = caller
        self.heard = heard
        audio_s = max(caller.size, heard.size) / rate
        marks = [m.t for m in report.markers] + [c.sent_s for c in report.checkpoints]
        self.duration = max(report.duration_s, audio_s, max(marks, default=0.0), 0.5)
        plot_px = max(MIN_WIDTH_PX - _PAD_L - _PAD_R, self.duration * PX_PER_SECOND)
        plot_px = min(plot_px, MAX_WIDTH_PX - _PAD_L - _PAD_R)
        self.pps = plot_px / self.duration
        self.width = math.ceil(_PAD_L + plot_px + _PAD_R)
        self.agent_rows = 3
        self.check_rows = 3
        lanes: list[_Lane] = []
        y = 0.0
        for key, label, h in (
            ("axis", "time", 22.0),
            ("caller-text", "caller said", 22.0),
            ("caller", "caller", 90.0),
            ("latency", "latency", 22.0),
            ("agent-text", "agent text", 15.0 * self.agent_rows + 4),
            ("checkpoints", "checkpoints", 7.0 * self.check_rows + 4),
            ("heard", "agent (heard)", 90.0),
            ("events", "events", 24.0),
        ):
            lanes.append(_Lane(key, label, y, h))
            y += h + 2
        self.lanes = {lane.key: lane for lane in lanes}
        self.height = math.ceil(y + 4)
        self.parts: list[str] = []
        self.peaks_dbfs: dict[str, float | None] = {}

    def x(self, t: float) -> float:
        return _PAD_L + min(max(t, 0.0), self.duration) * self.pps

    # --- drawing --------------------------------------------------------------------------------
    def render(self) -> str:
        self._backgrounds()
        self._axis()
        self._waveforms()
        self._caller_spans()
        self._latencies()
        self._agent_text()
        self._checkpoints()
        self._events()
        return (
            f'<svg id="timeline" class="timeline" width="{self.width}" height="{self.height}" '
            f'viewBox="0 0 {self.width} {self.height}" role="img" '
            'aria-label="call timeline">' + "".join(self.parts) + "</svg>"
        )

    def _mark(self, cls: str, title: str, body: str) -> None:
        """A hoverable group: the SVG ``<title>`` is what browsers show as the tooltip."""
        self.parts.append(f'<g class="m {cls}"><title>{_esc(title)}</title>{body}</g>')

    def _backgrounds(self) -> None:
        for key in ("caller", "heard"):
            lane = self.lanes[key]
            self.parts.append(
                f'<rect class="lane-bg" x="0" y="{_f(lane.top)}" width="{self.width}" '
                f'height="{_f(lane.height)}" fill="#f8fafc"/>'
            )
        for key in ("caller-text", "agent-text", "checkpoints", "latency", "events"):
            lane = self.lanes[key]
            self.parts.append(
                f'<line x1="0" x2="{self.width}" y1="{_f(lane.bottom + 1)}" '
                f'y2="{_f(lane.bottom + 1)}" stroke="#e5e7eb"/>'
            )

    def _axis(self) -> None:
        axis = self.lanes["axis"]
        top, bottom = axis.bottom, self.lanes["events"].bottom
        step = next(s for s in (1, 2, 5, 10, 30, 60, 120, 300, 600) if s * self.pps >= 40)
        minor = step / 5 if step * self.pps >= 150 else None
        grid, ticks, labels = [], [], []
        for i in range(int(self.duration // step) + 1):
            t = i * step
            x = _f(self.x(t))
            grid.append(f"M{x} {_f(top)}V{_f(bottom)}")
            ticks.append(f"M{x} {_f(axis.bottom - 7)}V{_f(axis.bottom)}")
            labels.append(
                f'<text x="{x}" y="{_f(axis.top + 12)}" text-anchor="middle">{_clock(t)}</text>'
            )
        if minor is not None:
            n_minor = int(self.duration // minor) + 1
            for i in range(n_minor):
                if i % 5:
                    x = _f(self.x(i * minor))
                    ticks.append(f"M{x} {_f(axis.bottom - 3)}V{_f(axis.bottom)}")
        self.parts.append(f'<path class="grid" d="{"".join(grid)}" stroke="#eef0f3"/>')
        self.parts.append(f'<path class="ticks" d="{"".join(ticks)}" stroke="{_MUTED}"/>')
        self.parts.append(f'<g class="axis-labels" fill="{_MUTED}">{"".join(labels)}</g>')
        end = _f(self.x(self.duration))
        self.parts.append(
            f'<line x1="{end}" x2="{end}" y1="{_f(top)}" y2="{_f(bottom)}" stroke="#d1d5db" '
            'stroke-dasharray="2 3"/>'
        )

    def _waveforms(self) -> None:
        """Both lanes on one vertical scale, so a quiet agent looks quiet next to the caller."""
        n_total = max(1, round(self.duration * self.rate))
        columns = int(min(MAX_COLUMNS, max(MIN_COLUMNS, self.width - _PAD_L - _PAD_R)))
        per = math.ceil(n_total / columns)
        envelopes = [_envelope(pcm, n_total, columns) for pcm in (self.caller, self.heard)]
        peaks = [float(max(hi.max(initial=0), -lo.min(initial=0))) for lo, hi, _ in envelopes]
        for key, peak in zip(("caller", "heard"), peaks, strict=True):
            self.peaks_dbfs[key] = 20 * math.log10(peak) if peak > 0 else None
        half = self.lanes["caller"].height / 2 - 3
        scale = half / max(max(peaks), 1 / 32)  # near-silent calls are not blown up to noise
        centres_s = (np.arange(envelopes[0][0].size, dtype=np.float64) + 0.5) * per / self.rate
        xs = _PAD_L + centres_s * self.pps
        for key, (lo, hi, rms), (light, dark) in zip(
            ("caller", "heard"),
            envelopes,
            ((_CALLER_LIGHT, _CALLER), (_AGENT_LIGHT, _AGENT)),
            strict=True,
        ):
            lane = self.lanes[key]
            mid = lane.mid
            body = [
                f'<line x1="0" x2="{self.width}" y1="{_f(mid)}" y2="{_f(mid)}" stroke="{light}"/>'
            ]
            if lo.size:
                # Silence keeps a hairline of height, so it reads as "nothing", not "missing".
                top = np.minimum(mid - hi * scale, mid - 0.4)
                bot = np.maximum(mid - lo * scale, mid + 0.4)
                body.append(self._band(xs, top, bot, light, "env"))
                body.append(self._band(xs, mid - rms * scale, mid + rms * scale, dark, "rms"))
            self.parts.append(f'<g id="lane-{key}" class="lane wave">{"".join(body)}</g>')

    @staticmethod
    def _band(xs: npt.NDArray[np.float64], top: Any, bot: Any, colour: str, cls: str) -> str:
        px = np.concatenate((xs, xs[::-1]))
        py = np.concatenate((top, bot[::-1]))
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px.tolist(), py.tolist(), strict=True))
        return f'<polygon class="{cls}" points="{points}" fill="{colour}"/>'

    def _caller_spans(self) -> None:
        lane = self.lanes["caller-text"]
        spans = sorted(
            (t for t in self.report.turns if t.caller_speech_start_s is not None),
            key=lambda t: t.caller_speech_start_s or 0.0,
        )
        for i, turn in enumerate(spans):
            start = turn.caller_speech_start_s or 0.0
            end = turn.caller_speech_end_s if turn.caller_speech_end_s is not None else start
            x0, x1 = self.x(start), self.x(max(end, start))
            limit = (
                self.x(spans[i + 1].caller_speech_start_s or 0.0)
                if i + 1 < len(spans)
                else (self.width)
            )
            text = turn.transcript if turn.transcript is not None else (turn.caller_said or "")
            label = _fit(text, min(limit - x0 - 8, _MAX_LABEL_PX * 2))
            title = _turn_title(turn)
            y = lane.top + 3
            h = lane.height - 6
            body = (
                f'<rect x="{_f(x0)}" y="{_f(y)}" width="{_f(max(x1 - x0, 2))}" height="{_f(h)}" '
                f'rx="3" fill="{_CALLER_LIGHT}" fill-opacity=".7"/>'
                f'<rect x="{_f(x0)}" y="{_f(y)}" width="2" height="{_f(h)}" fill="{_CALLER}"/>'
                f'<text x="{_f(x0 + 5)}" y="{_f(lane.mid + 4)}" fill="#1e3a8a">{_esc(label)}</text>'
            )
            self._mark("m-transcript-span", title, body)
        cl = self.lanes["caller"]
        for m in self._markers("caller_speech_start", "caller_speech_end", "transcript"):
            x = _f(self.x(m.t))
            if m.kind == "transcript":
                body = (
                    f'<path d="M{x} {_f(cl.top + 2)}l-4 -4h8z" fill="{_CALLER}"/>'
                    f'<line x1="{x}" x2="{x}" y1="{_f(cl.top)}" y2="{_f(cl.top + 8)}" '
                    f'stroke="{_CALLER}"/>'
                )
                title = f"{m.t:.2f} s transcript: {m.text}"
            else:
                body = (
                    f'<line x1="{x}" x2="{x}" y1="{_f(cl.top)}" y2="{_f(cl.bottom)}" '
                    f'stroke="{_CALLER}" stroke-opacity=".35" stroke-dasharray="3 3"/>'
                )
                what = "starts" if m.kind == "caller_speech_start" else "ends"
                title = f"{m.t:.2f} s caller speech {what}" + (f": {m.text}" if m.text else "")
            self._mark(f"m-{m.kind.replace('_', '-')}", title, body)

    def _latencies(self) -> None:
        lane = self.lanes["latency"]
        y = lane.mid
        for turn in self.report.turns:
            end = turn.caller_speech_end_s
            played = turn.first_audio_played_s
            if end is None or played is None or turn.latency_s is None:
                continue
            x0, x1 = self.x(end), self.x(played)
            colour = _latency_colour(turn.latency_s)
            label = f"{turn.latency_s:.2f} s"
            text_x = (x0 + x1) / 2
            anchor = "middle"
            if x1 - x0 < len(label) * _CHAR_PX + 6:
                text_x, anchor = x1 + 4, "start"
            body = (
                f'<path d="M{_f(x0)} {_f(y - 5)}v10M{_f(x0)} {_f(y)}H{_f(x1)}'
                f'M{_f(x1)} {_f(y - 5)}v10" stroke="{colour}" stroke-width="1.5" fill="none"/>'
                f'<text x="{_f(text_x)}" y="{_f(y - 2)}" text-anchor="{anchor}" '
                f'fill="{colour}" class="lat">{label}</text>'
            )
            sent = ""
            if turn.first_audio_sent_s is not None:
                sent = f", first audio sent {turn.first_audio_sent_s:.2f} s"
            title = (
                f"turn {turn.index}: caller stopped {end:.2f} s{sent}, "
                f"first audio played {played:.2f} s, latency {turn.latency_s:.3f} s"
            )
            self._mark("m-latency", title, body)

    def _agent_text(self) -> None:
        lane = self.lanes["agent-text"]
        row_end = [-math.inf] * self.agent_rows
        for m in self._markers("agent_text"):
            x = self.x(m.t)
            row = next((r for r, e in enumerate(row_end) if e <= x), None)
            title = f"{m.t:.2f} s agent: {m.text}"
            if row is None:  # crowded: a tick only, the tooltip still has the text
                body = (
                    f'<line x1="{_f(x)}" x2="{_f(x)}" y1="{_f(lane.bottom - 6)}" '
                    f'y2="{_f(lane.bottom)}" stroke="{_AGENT}"/>'
                )
                self._mark("m-agent-text", title, body)
                continue
            label = _fit(m.text, _MAX_LABEL_PX)
            width = len(label) * _CHAR_PX
            row_end[row] = x + width + 12
            y = lane.top + 2 + row * 15
            body = (
                f'<rect x="{_f(x)}" y="{_f(y)}" width="2" height="13" fill="{_AGENT}"/>'
                f'<text x="{_f(x + 5)}" y="{_f(y + 10)}" fill="#134e4a">{_esc(label)}</text>'
            )
            self._mark("m-agent-text", title, body)
        hl = self.lanes["heard"]
        for m in self._markers("played"):
            px = _f(self.x(m.t))
            body = f'<path d="M{px} {_f(hl.bottom - 1)}l-4 5h8z" fill="{_AGENT}"/>'
            self._mark("m-played", f"{m.t:.2f} s played" + (f": {m.text}" if m.text else ""), body)

    def _checkpoints(self) -> None:
        lane = self.lanes["checkpoints"]
        clears = sorted(m.t for m in self.report.markers if m.kind == "clear")
        row_end = [-math.inf] * self.check_rows
        for cp in sorted(self.report.checkpoints, key=lambda c: c.sent_s):
            end, state = _checkpoint_end(cp, clears, self.duration)
            x0, x1 = self.x(cp.sent_s), self.x(end)
            row = next((r for r, e in enumerate(row_end) if e <= x0), len(row_end) - 1)
            row_end[row] = max(row_end[row], x1 + 2)
            y = lane.top + 3 + row * 7
            colour = _CLEARED if cp.cleared else _CHECK
            dash = ' stroke-dasharray="2 2"' if state == "pending" else ""
            body = (
                f'<line x1="{_f(x0)}" x2="{_f(x0)}" y1="{_f(y - 2)}" y2="{_f(y + 3)}" '
                f'stroke="{colour}" stroke-width="1.5"/>'
                f'<line x1="{_f(x0)}" x2="{_f(x1)}" y1="{_f(y)}" y2="{_f(y)}" '
                f'stroke="{colour}" stroke-width="2"{dash}/>'
            )
            if cp.cleared:
                body += (
                    f'<path d="M{_f(x1 - 3)} {_f(y - 3)}l6 6m0 -6l-6 6" stroke="{colour}" '
                    'stroke-width="1.5"/>'
                )
            elif state == "acked":
                body += f'<circle cx="{_f(x1)}" cy="{_f(y)}" r="2" fill="{colour}"/>'
            title = f"checkpoint {cp.name}: sent {cp.sent_s:.2f} s, " + (
                "dropped by a clear"
                if cp.cleared
                else f"acked {cp.acked_s:.2f} s"
                if cp.acked_s is not None
                else "never acknowledged"
            )
            self._mark("m-checkpoint" + (" cleared" if cp.cleared else ""), title, body)
        # Checkpoint markers without a CheckpointReport still deserve a tick.
        known = {(c.name, round(c.sent_s, 3)) for c in self.report.checkpoints}
        for m in self._markers("checkpoint"):
            if (m.text, round(m.t, 3)) in known:
                continue
            x = _f(self.x(m.t))
            body = (
                f'<line x1="{x}" x2="{x}" y1="{_f(lane.top + 1)}" y2="{_f(lane.bottom - 1)}" '
                f'stroke="{_CHECK}"/>'
            )
            self._mark("m-checkpoint", f"{m.t:.2f} s checkpoint {m.text}", body)

    def _events(self) -> None:
        top = self.lanes["caller-text"].top
        bottom = self.lanes["events"].bottom
        ev = self.lanes["events"]
        for m in self.report.markers:
            x = self.x(m.t)
            xs = _f(x)
            suffix = f": {m.text}" if m.text else ""
            if m.kind in ("clear", "barge_in"):
                barge = m.kind == "barge_in"
                name = "barge-in" if barge else "clear"
                style = 'stroke-width="2"' if barge else 'stroke-width="1.5" stroke-dasharray="5 3"'
                tx, anchor = (x - 3, "end") if barge else (x + 3, "start")
                body = (
                    f'<line x1="{xs}" x2="{xs}" y1="{_f(top)}" y2="{_f(bottom)}" '
                    f'stroke="{_RED}" {style}/>'
                    f'<text x="{_f(tx)}" y="{_f(ev.mid + 4)}" text-anchor="{anchor}" '
                    f'fill="{_RED}">{name}</text>'
                )
                self._mark(f"m-{name} m-red", f"{m.t:.2f} s {name}{suffix}", body)
            elif m.kind in ("hangup", "close"):
                name = "hang-up" if m.kind == "hangup" else "closed"
                body = (
                    f'<line x1="{xs}" x2="{xs}" y1="{_f(top)}" y2="{_f(bottom)}" '
                    f'stroke="{_INK}" stroke-width="2"/>'
                    f'<path d="M{xs} {_f(ev.top + 3)}h-9l3 4l-3 4h9z" fill="{_INK}"/>'
                    f'<text x="{_f(x - 12)}" y="{_f(ev.mid + 4)}" text-anchor="end" '
                    f'fill="{_INK}">{_esc(_fit(f"{name} {m.text}".strip(), 150))}</text>'
                )
                self._mark(f"m-{m.kind}", f"{m.t:.2f} s {name}{suffix}", body)
            elif m.kind == "dtmf":
                body = (
                    f'<path d="M{xs} {_f(ev.mid - 6)}l6 6l-6 6l-6 -6z" fill="{_AMBER}"/>'
                    f'<text x="{_f(x + 8)}" y="{_f(ev.mid + 4)}" fill="{_AMBER}">'
                    f"{_esc(_fit(m.text, 80))}</text>"
                )
                self._mark("m-dtmf", f"{m.t:.2f} s DTMF{suffix}", body)
            elif m.kind not in _DRAWN_ELSEWHERE:
                body = f'<circle cx="{xs}" cy="{_f(ev.mid)}" r="3" fill="none" stroke="{_MUTED}"/>'
                self._mark("m-other", f"{m.t:.2f} s {m.kind}{suffix}", body)

    def _markers(self, *kinds: str) -> list[MarkerEvent]:
        return sorted((m for m in self.report.markers if m.kind in kinds), key=lambda m: m.t)

    def label_column(self) -> str:
        """Lane names in a column beside the scrolling SVG, so they stay put when it scrolls."""
        items = []
        for lane in self.lanes.values():
            label = _esc(lane.label)
            if lane.key in self.peaks_dbfs:
                peak = self.peaks_dbfs[lane.key]
                level = "silent" if peak is None else f"peak {peak:.0f} dBFS"
                label += f'<small class="peak">{level}</small>'
            items.append(
                f'<div class="lab lab-{lane.key}" style="top:{_f(lane.top)}px;'
                f'height:{_f(lane.height)}px"><span>{label}</span></div>'
            )
        return f'<div class="tl-labels" style="height:{self.height}px">{"".join(items)}</div>'


_DRAWN_ELSEWHERE: Final = frozenset(
    {"caller_speech_start", "caller_speech_end", "transcript", "agent_text", "checkpoint", "played"}
)


def _checkpoint_end(
    cp: CheckpointReport, clears: Sequence[float], duration: float
) -> tuple[float, str]:
    """Where a checkpoint's bar ends: its ack, the clear that dropped it, or the call's end."""
    if cp.acked_s is not None:
        return max(cp.acked_s, cp.sent_s), "acked"
    if cp.cleared:
        after = [t for t in clears if t >= cp.sent_s]
        return (after[0] if after else cp.sent_s), "cleared"
    return duration, "pending"


def _latency_colour(latency: float) -> str:
    if latency < 1.0:
        return "#15803d"
    if latency < 2.0:
        return _AMBER
    return _RED


def _turn_title(turn: TurnReport) -> str:
    lines = [
        f"turn {turn.index}: {_secs(turn.caller_speech_start_s)} \u2013 "
        f"{_secs(turn.caller_speech_end_s)}"
    ]
    if turn.caller_said is not None:
        lines.append(f"said: {turn.caller_said}")
    lines.append(f"transcript: {turn.transcript if turn.transcript is not None else '(none)'}")
    return "\n".join(lines)


# --- the page around the timeline ----------------------------------------------------------------

_CSS: Final = """
*{box-sizing:border-box}
body{margin:0;padding:24px 28px 48px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;color:#1f2937;background:#f3f4f6}
h1{font-size:20px;margin:0 0 4px}
h2{font-size:16px;margin:28px 0 10px}
.sub{color:#6b7280;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px 14px;min-width:120px}
.card .k{font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:20px;font-weight:600}
.card .v small{font-size:13px;font-weight:400;color:#6b7280}
.card.bad{border-color:#fca5a5;background:#fef2f2}
.panel{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px}
.tl{display:flex}
.tl-labels{position:relative;flex:0 0 104px;border-right:1px solid #e5e7eb}
.lab{position:absolute;left:0;right:8px;display:flex;align-items:center;justify-content:flex-end;
font-size:12px;color:#6b7280;text-align:right}
.lab small.peak{display:block;font-weight:400;color:#9ca3af;font-size:11px}
.lab-caller{color:#2563eb;font-weight:600}.lab-heard{color:#0f766e;font-weight:600}
.tl-scroll{overflow-x:auto;flex:1 1 auto}
svg.timeline{display:block;font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
svg.timeline text{white-space:pre}
svg.timeline .lat{font-weight:600}
svg.timeline g.m{cursor:help}
svg.timeline g.m:hover{filter:brightness(.8)}
svg.timeline g.m:hover text{font-weight:600}
.legend{display:flex;flex-wrap:wrap;gap:16px;margin-top:10px;font-size:12px;color:#4b5563}
.legend span{display:inline-flex;align-items:center;gap:6px}
.sw{display:inline-block;width:18px;height:10px;border-radius:2px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #e5e7eb;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600;color:#374151}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
td.none{color:#9ca3af}
.good{color:#15803d}.warn{color:#b45309}.bad{color:#dc2626}
.yes{color:#dc2626;font-weight:600}
.chat{display:flex;flex-direction:column;gap:8px;max-width:900px}
.msg{padding:8px 12px;border-radius:10px;max-width:80%;white-space:pre-wrap;word-wrap:break-word}
.msg .role{display:block;font-size:11px;text-transform:uppercase;letter-spacing:.05em;
color:#6b7280;margin-bottom:2px}
.msg.caller{align-self:flex-start;background:#dbeafe}
.msg.agent{align-self:flex-end;background:#ccfbf1}
.msg.cut{border-right:3px solid #dc2626}
.msg.other{align-self:center;background:#f3f4f6;border:1px solid #e5e7eb}
.errors{background:#fef2f2;border:1px solid #fca5a5;border-radius:8px;padding:8px 14px;
margin-top:14px;color:#991b1b}
details{margin-top:14px}
summary{cursor:pointer;color:#374151;font-weight:600}
pre{white-space:pre-wrap;word-break:break-all;margin:0;font-size:12px}
"""


def _card(key: str, value: str, extra: str = "", bad: bool = False) -> str:
    small = f" <small>{extra}</small>" if extra else ""
    cls = "card bad" if bad else "card"
    return f'<div class="{cls}"><div class="k">{key}</div><div class="v">{value}{small}</div></div>'


def _header(report: CallReport) -> str:
    s = report.summary()
    p50, p95, pmax = s["latency_p50_s"], s["latency_p95_s"], s["latency_max_s"]
    close = report.closed_by or "?"
    if report.close_code is not None:
        close += f" ({report.close_code}{' ' + report.close_reason if report.close_reason else ''})"
    cards = [
        _card("duration", f"{report.duration_s:.1f} s"),
        _card("turns", str(s["turns"]), f"{s['answered_turns']} answered"),
        _card("latency p50", _secs(p50), ""),
        _card("latency p95", _secs(p95), f"max {_secs(pmax)}" if pmax is not None else ""),
        _card("barge-ins", str(s["barge_ins"])),
        _card(
            "checkpoints acked",
            f"{s['checkpoints_acked']}/{s['checkpoints_sent']}",
            f"{s['checkpoints_cleared']} cleared" if s["checkpoints_cleared"] else "",
        ),
        _card("closed by", _esc(close)),
    ]
    if report.protocol_errors:
        cards.append(_card("protocol errors", str(len(report.protocol_errors)), bad=True))
    sub = (
        f"{_esc(report.codec)} @ {report.sample_rate} Hz · mode {_esc(report.mode)} · "
        f"{report.duration_s:.2f} s"
    )
    out = [
        f"<h1>voicebridge call · {_esc(report.pipeline)}</h1>",
        f'<p class="sub">{sub}</p>',
        f'<div class="cards">{"".join(cards)}</div>',
    ]
    if report.protocol_errors:
        items = "".join(f"<li>{_esc(e)}</li>" for e in report.protocol_errors[:_MAX_TABLE_ROWS])
        out.append(f'<div class="errors"><strong>Protocol errors</strong><ul>{items}</ul></div>')
    return "".join(out)


def _legend() -> str:
    def sw(colour: str, label: str, style: str = "") -> str:
        return f'<span><i class="sw" style="background:{colour};{style}"></i>{label}</span>'

    return (
        '<div class="legend">'
        + sw(_CALLER, "caller (min/max, RMS)")
        + sw(_AGENT, "agent as heard")
        + sw(_CALLER_LIGHT, "caller speech + transcript")
        + sw("#15803d", "latency: end of speech → first audio played", "height:3px")
        + sw(_CHECK, "checkpoint sent → acked", "height:3px")
        + sw(_CLEARED, "checkpoint dropped by clear \u00d7", "height:3px")
        + sw(_RED, "barge-in (solid) / clear (dashed)", "width:3px;height:14px")
        + "<span>hover any mark for its text</span></div>"
    )


def _cell(value: str | None, cls: str = "") -> str:
    if value is None or value == "":
        return '<td class="none">\u2013</td>'
    attr = f' class="{cls}"' if cls else ""
    return f"<td{attr}>{_esc(value)}</td>"


def _turn_table(turns: Iterable[TurnReport]) -> str:
    rows = []
    for t in turns:
        lat = t.latency_s
        lat_cls = (
            ""
            if lat is None
            else {"#15803d": "good", _AMBER: "warn", _RED: "bad"}[_latency_colour(lat)]
        )
        when = (
            f"{t.caller_speech_start_s:.2f}\u2013{t.caller_speech_end_s:.2f}"
            if t.caller_speech_start_s is not None and t.caller_speech_end_s is not None
            else None
        )
        rows.append(
            "<tr>"
            f'<td class="num">{t.index}</td>'
            + _cell(when, "num")
            + _cell(t.caller_said)
            + _cell(t.transcript)
            + _cell(" ".join(t.agent_text))
            + _cell(t.heard_text)
            + (f'<td class="num {lat_cls}">{_secs(lat)}</td>' if lat is not None else _cell(None))
            + ('<td class="yes">yes</td>' if t.interrupted else "<td>no</td>")
            + "</tr>"
        )
    if not rows:
        return '<p class="sub">No turns.</p>'
    head = (
        "<tr><th>#</th><th>speech (s)</th><th>caller said</th><th>transcript</th>"
        "<th>agent reply</th><th>heard by caller</th><th>latency</th><th>interrupted</th></tr>"
    )
    return f'<table class="turns"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


_CALLER_ROLES: Final = frozenset({"caller", "user", "human"})
_AGENT_ROLES: Final = frozenset({"agent", "assistant", "bot"})


def _history(history: Sequence[dict[str, object]]) -> str:
    """Chat bubbles: the caller left, the agent right, anything else centred as raw data.

    Entries are ``{"role", "text", "turn", "interrupted"}`` (voicebridge's history) or
    ``{"role", "content"}`` (chat-API style); other keys are shown compactly, not dropped.
    """
    if not history:
        return '<p class="sub">No history.</p>'
    items = []
    for entry in history[:_MAX_TABLE_ROWS]:
        role = str(entry.get("role") or "entry")
        content = entry.get("text", entry.get("content"))
        text = content if isinstance(content, str) else _compact(content)
        meta = [role]
        if entry.get("turn") is not None:
            meta.append(f"turn {entry['turn']}")
        if entry.get("interrupted"):
            meta.append("interrupted")
        shown = {"role", "text", "content", "turn", "interrupted"}
        rest = {k: v for k, v in entry.items() if k not in shown}
        if rest:
            text = f"{text}\n{_compact(rest)}" if text else _compact(rest)
        cls = "caller" if role in _CALLER_ROLES else "agent" if role in _AGENT_ROLES else "other"
        cut = " cut" if entry.get("interrupted") else ""
        label = _esc(" \u00b7 ".join(meta))
        items.append(
            f'<div class="msg {cls}{cut}"><span class="role">{label}</span>{_esc(text)}</div>'
        )
    return f'<div class="chat">{"".join(items)}</div>'


def _compact(value: object, limit: int = 400) -> str:
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _details(title: str, rows: Sequence[object]) -> str:
    if not rows:
        return ""
    shown = rows[:_MAX_TABLE_ROWS]
    more = f" (first {len(shown)} of {len(rows)})" if len(rows) > len(shown) else ""
    body = "\n".join(_compact(r) for r in shown)
    return (
        f"<details><summary>{_esc(title)} ({len(rows)}){more}</summary>"
        f'<div class="panel"><pre>{_esc(body)}</pre></div></details>'
    )


def render_html(report: CallReport, caller: PCM, heard: PCM, rate: int) -> str:
    """The report page as one self-contained HTML string.

    ``caller`` and ``heard`` are the two channels of the call's WAV (the caller, and the agent as
    the caller heard it) at ``rate`` Hz; they are reduced to a min/max/RMS envelope of at most
    3000 columns per lane, so the page stays small however long the call.
    """
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    timeline = _Timeline(
        report, np.asarray(caller, dtype=np.int16), np.asarray(heard, dtype=np.int16), rate
    )
    svg = timeline.render()
    markers = [_marker_row(m) for m in report.markers]
    body = [
        _header(report),
        "<h2>Timeline</h2>",
        f'<div class="panel"><div class="tl">{timeline.label_column()}'
        f'<div class="tl-scroll">{svg}</div></div>{_legend()}</div>',
        "<h2>Turns</h2>",
        _turn_table(report.turns),
        "<h2>Conversation history</h2>",
        _history(report.history),
        _details("Timeline markers", markers),
        _details("Barge-ins", report.barge_ins),
        _details("Wire events", report.events),
    ]
    title = f"voicebridge call · {report.pipeline}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def _marker_row(m: MarkerEvent) -> dict[str, Any]:
    return {"t": round(m.t, 3), "kind": m.kind, "text": m.text}


def write_html(
    path: str | os.PathLike[str], report: CallReport, caller: PCM, heard: PCM, rate: int
) -> None:
    """Write :func:`render_html` to ``path`` as UTF-8."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_html(report, caller, heard, rate))
