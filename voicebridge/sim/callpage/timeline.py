"""The call on one time axis, as HTML that fits any width.

Every mark is placed in percent of the call's duration, so the whole call fits the page at any
width without a redraw; the waveforms are SVG stretched to the lane. Labels (what the caller and
the agent said, latencies, checkpoints, events) are laid out by the page's script once it knows
the width: each takes the lowest row of its lane where it overlaps no other label, so labels
never cover each other and long text wraps instead of being cut. Without the script they sit at
their times in one row. Every mark carries ``data-kind`` (the legend explains each kind) and a
``title`` with its full text and times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from voicebridge.call.ledger import checkpoint_turn
from voicebridge.frames import PCM
from voicebridge.sim.callpage.text import DASH, clock, dbfs, esc, secs, turns_label
from voicebridge.sim.callpage.waveform import draw_waves
from voicebridge.sim.report import CallReport, CheckpointReport, MarkerEvent, TurnReport

TICK_STEPS: Final = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
MAX_TICKS: Final = 240  # the script shows the widest step that keeps labels apart; these exist

# Marker kinds drawn as labelled events in the events lane (with a line through every lane).
_EVENT_NAMES: Final = {
    "barge_in": "barge-in",
    "clear": "clear",
    "hangup": "hang-up",
    "close": "call closed",
    "dtmf": "DTMF",
}
_LINED: Final = frozenset({"barge_in", "clear", "hangup", "close"})
_ANCHOR_END: Final = frozenset({"barge_in", "hangup", "close"})  # label sits left of its line
_DRAWN_IN_LANES: Final = frozenset(
    {"caller_speech_start", "caller_speech_end", "transcript", "agent_text", "checkpoint", "played"}
)


def latency_class(latency: float) -> str:
    """good under 1 s, warn under 2 s, bad after: the same bands in the timeline and the table."""
    return "good" if latency < 1.0 else "warn" if latency < 2.0 else "bad"


def call_duration(report: CallReport, caller: PCM, heard: PCM, rate: int) -> float:
    """The timeline's length: the call, its audio and every mark fit."""
    audio_s = max(caller.size, heard.size) / rate
    marks = [m.t for m in report.markers] + [c.sent_s for c in report.checkpoints]
    marks += [c.acked_s for c in report.checkpoints if c.acked_s is not None]
    return max(report.duration_s, audio_s, max(marks, default=0.0), 0.5)


def tick_base(duration: float) -> float:
    return next((s for s in TICK_STEPS if duration / s <= MAX_TICKS), TICK_STEPS[-1])


def _num(x: float) -> str:
    s = f"{x:.3f}".rstrip("0").rstrip(".")
    return s or "0"


class Timeline:
    """Builds the timeline's HTML and remembers which mark kinds it drew (for the legend)."""

    def __init__(self, report: CallReport, caller: PCM, heard: PCM, rate: int) -> None:
        self.report = report
        self.rate = rate
        self.n_samples = math.ceil(call_duration(report, caller, heard, rate) * rate)
        self.duration = self.n_samples / rate
        self.caller = caller
        self.heard = heard
        self.kinds: set[str] = set()

    def pct(self, t: float) -> str:
        return _num(min(max(t, 0.0), self.duration) / self.duration * 100) + "%"

    def _t(self, t: float) -> str:
        return _num(min(max(t, 0.0), self.duration))

    # --- the whole --------------------------------------------------------------------------------
    def render(self, *, with_playhead: bool) -> str:
        waves = draw_waves(self.caller, self.heard, self.n_samples, self.duration)
        self.kinds.update({"caller-wave", "agent-wave"})
        events, lines = self._events()
        lanes = [
            self._lane("axis", "time", self._ticks(), "axis"),
            self._lane("caller-text", "caller said", self._caller_speech(), "packed text"),
            self._lane(
                "caller",
                "caller",
                waves.caller_svg + self._caller_marks(),
                "wave",
                waves.caller_peak_dbfs,
            ),
            self._lane("latency", "latency", self._latencies(), "packed"),
            self._lane("agent-text", "agent said", self._agent_text(), "packed text"),
            self._lane("checkpoints", "checkpoints", self._checkpoints(), "packed"),
            self._lane(
                "heard",
                "agent (heard)",
                waves.heard_svg + self._played_marks(),
                "wave",
                waves.heard_peak_dbfs,
            ),
            self._lane("events", "events", events, "packed"),
        ]
        overlay = self._grid() + lines + '<i class="tl-end" data-kind="end"></i>'
        self.kinds.add("end")
        if with_playhead:
            overlay += '<i class="playhead" id="playhead" data-kind="playhead" hidden></i>'
            self.kinds.add("playhead")
        steps = " ".join(f"{s:g}" for s in TICK_STEPS)
        return (
            '<div class="tl-tools" id="tl-tools" hidden><span>zoom</span>'
            '<button type="button" data-zoom="out" aria-label="zoom out">\u2212</button>'
            '<button type="button" data-zoom="fit">fit</button>'
            '<button type="button" data-zoom="in" aria-label="zoom in">+</button>'
            '<span class="zoom-level" id="zoom-level">whole call</span>'
            '<span class="dense-note" id="dense-note" hidden>\u00b7 grey ticks are labels '
            "folded for room: zoom in, or click one</span></div>"
            '<div class="tl-scroll" id="tl-scroll">'
            f'<div class="tl" id="tl" data-duration="{_num(self.duration)}" '
            f'data-tick-base="{tick_base(self.duration):g}" data-tick-steps="{steps}">'
            + "".join(lanes)
            + f'<div class="tl-overlay" aria-hidden="true">{overlay}</div></div></div>'
        )

    def _lane(
        self, key: str, name: str, body: str, cls: str, peak: float | bool | None = False
    ) -> str:
        level = "" if peak is False else f'<small class="peak">peak {dbfs(peak)}</small>'
        if peak is None:
            level = '<small class="peak">silent</small>'
        return (
            f'<div class="tl-lane lane-{key} {cls}"><div class="lane-name">'
            f"<span>{esc(name)}</span>{level}</div>"
            f'<div class="lane-body {cls}" id="lane-{key}">{body}</div></div>'
        )

    # --- axis -------------------------------------------------------------------------------------
    def _tick_times(self) -> list[float]:
        base = tick_base(self.duration)
        return [i * base for i in range(int(self.duration / base + 1e-9) + 1)]

    def _ticks(self) -> str:
        return "".join(
            f'<span class="tk" data-tick="{t:g}" style="left:{self.pct(t)}">{clock(t)}</span>'
            for t in self._tick_times()
        )

    def _grid(self) -> str:
        return "".join(
            f'<i class="gl" data-tick="{t:g}" style="left:{self.pct(t)}"></i>'
            for t in self._tick_times()
        )

    # --- items ------------------------------------------------------------------------------------
    def _item(
        self,
        kind: str,
        cls: str,
        t0: float,
        title: str,
        inner: str,
        t1: float | None = None,
        attrs: str = "",
    ) -> str:
        """A label the script packs into its lane: at ``t0``, spanning to ``t1`` if given."""
        self.kinds.add(kind)
        span = f' data-t1="{self._t(t1)}"' if t1 is not None else ""
        return (
            f'<div class="pk {cls}" data-kind="{kind}" data-t0="{self._t(t0)}"{span}{attrs} '
            f'style="left:{self.pct(t0)}" title="{esc(title)}">{inner}</div>'
        )

    def _mark(self, kind: str, cls: str, t: float, title: str) -> str:
        """A mark at ``t`` that needs no room of its own (a triangle, a dashed edge)."""
        self.kinds.add(kind)
        return (
            f'<i class="mk {cls}" data-kind="{kind}" style="left:{self.pct(t)}" '
            f'title="{esc(title)}"></i>'
        )

    def _markers(self, *kinds: str) -> list[MarkerEvent]:
        return sorted((m for m in self.report.markers if m.kind in kinds), key=lambda m: m.t)

    # --- caller -----------------------------------------------------------------------------------
    def _caller_speech(self) -> str:
        spans = sorted(
            (t for t in self.report.turns if t.caller_speech_start_s is not None),
            key=lambda t: t.caller_speech_start_s or 0.0,
        )
        out = []
        for turn in spans:
            start = turn.caller_speech_start_s or 0.0
            end = turn.caller_speech_end_s if turn.caller_speech_end_s is not None else start
            text = turn.transcript if turn.transcript is not None else (turn.caller_said or "")
            inner = f'<i class="bar"></i><span class="txt">{esc(text)}</span>'
            out.append(
                self._item(
                    "caller-speech", "utt", start, speech_title(turn), inner, max(end, start)
                )
            )
        return "".join(out)

    def _caller_marks(self) -> str:
        out = []
        for m in self._markers("caller_speech_start", "caller_speech_end", "transcript"):
            if m.kind == "transcript":
                out.append(
                    self._mark("transcript", "tri-down", m.t, f"{m.t:.2f} s transcript: {m.text}")
                )
            else:
                what = "starts" if m.kind == "caller_speech_start" else "ends"
                title = f"{m.t:.2f} s caller speech {what}" + (f": {m.text}" if m.text else "")
                out.append(self._mark("speech-edge", "edge", m.t, title))
        return "".join(out)

    # --- the agent --------------------------------------------------------------------------------
    def _latencies(self) -> str:
        out = []
        for turn in self.report.turns:
            end, played = turn.caller_speech_end_s, turn.first_audio_played_s
            if end is None or played is None or turn.latency_s is None:
                continue
            sent = ""
            if turn.first_audio_sent_s is not None:
                sent = f", first audio sent {turn.first_audio_sent_s:.2f} s"
            title = (
                f"{reply_name(turn)}: caller stopped {end:.2f} s{sent}, "
                f"first audio played {played:.2f} s, latency {turn.latency_s:.3f} s"
            )
            inner = f'<i class="bar"></i><span class="txt">{secs(turn.latency_s)}</span>'
            cls = f"lat {latency_class(turn.latency_s)}"
            out.append(self._item("latency", cls, end, title, inner, max(played, end)))
        return "".join(out)

    def _agent_text(self) -> str:
        out = []
        for m in self._markers("agent_text"):
            badge = attrs = ""
            if m.turn is not None:
                badge = f'<b class="tn" title="turn {m.turn}">{m.turn}</b>'
                attrs = f' data-turn="{m.turn}"'
            title = f"{m.t:.2f} s" + (f" turn {m.turn}" if m.turn is not None else "")
            inner = f'{badge}<span class="txt">{esc(m.text)}</span>'
            out.append(
                self._item("agent-text", "say", m.t, f"{title}: {m.text}", inner, None, attrs)
            )
        return "".join(out)

    def _checkpoints(self) -> str:
        clears = sorted(m.t for m in self.report.markers if m.kind == "clear")
        out = []
        for cp in sorted(self.report.checkpoints, key=lambda c: c.sent_s):
            end, state = checkpoint_end(cp, clears, self.duration)
            kind = {"acked": "checkpoint", "cleared": "checkpoint-cleared"}.get(
                state, "checkpoint-pending"
            )
            turn = checkpoint_turn(cp.name)
            attrs = f' data-name="{esc(cp.name)}"' + (
                f' data-turn="{turn}"' if turn is not None else ""
            )
            title = f"checkpoint {cp.name}: sent {cp.sent_s:.2f} s, " + (
                "dropped by a clear"
                if cp.cleared
                else f"acked {cp.acked_s:.2f} s"
                if cp.acked_s is not None
                else "never acknowledged"
            )
            tail = '<span class="x">\u00d7</span>' if state == "cleared" else ""
            inner = f'<i class="bar"></i>{tail}'
            out.append(self._item(kind, f"cp {state}", cp.sent_s, title, inner, end, attrs))
        # Checkpoint markers without a CheckpointReport still deserve a mark.
        known = {(c.name, round(c.sent_s, 3)) for c in self.report.checkpoints}
        for m in self._markers("checkpoint"):
            if (m.text, round(m.t, 3)) in known:
                continue
            attrs = f' data-name="{esc(m.text)}"' + (
                f' data-turn="{m.turn}"' if m.turn is not None else ""
            )
            title = f"{m.t:.2f} s checkpoint {m.text}"
            out.append(
                self._item(
                    "checkpoint-pending",
                    "cp pending",
                    m.t,
                    title,
                    '<i class="bar"></i>',
                    m.t,
                    attrs,
                )
            )
        return "".join(out)

    def _played_marks(self) -> str:
        return "".join(
            self._mark(
                "played", "tri-up", m.t, f"{m.t:.2f} s played" + (f": {m.text}" if m.text else "")
            )
            for m in self._markers("played")
        )

    # --- events -----------------------------------------------------------------------------------
    def _events(self) -> tuple[str, str]:
        """The events lane's labels, and their lines through every lane (for the overlay)."""
        labels, lines = [], []
        for m in sorted(self.report.markers, key=lambda m: m.t):
            if m.kind in _DRAWN_IN_LANES:
                continue
            known = m.kind in _EVENT_NAMES
            kind = m.kind.replace("_", "-") if known else "other"
            name = _EVENT_NAMES.get(m.kind, m.kind)
            shown = f"{name} {m.text}" if m.kind == "dtmf" else name
            title = f"{m.t:.2f} s {name}" + (f": {m.text}" if m.text else "")
            cls = f"ev {kind}" + (" end" if m.kind in _ANCHOR_END else "")
            labels.append(self._item(kind, cls, m.t, title, f"<span>{esc(shown)}</span>"))
            if m.kind in _LINED:
                lines.append(f'<i class="vl {kind}" style="left:{self.pct(m.t)}"></i>')
        return "".join(labels), "".join(lines)


def checkpoint_end(
    cp: CheckpointReport, clears: Sequence[float], duration: float
) -> tuple[float, str]:
    """Where a checkpoint's bar ends: its ack, the clear that dropped it, or the call's end."""
    if cp.acked_s is not None:
        return max(cp.acked_s, cp.sent_s), "acked"
    if cp.cleared:
        after = [t for t in clears if t >= cp.sent_s]
        return (after[0] if after else cp.sent_s), "cleared"
    return duration, "pending"


def reply_name(turn: TurnReport) -> str:
    if not turn.agent_turns:
        return "no reply"
    return ("turns " if len(turn.agent_turns) > 1 else "turn ") + turns_label(turn.agent_turns)


def speech_title(turn: TurnReport) -> str:
    lines = [
        f"caller speech {secs(turn.caller_speech_start_s)} {DASH} "
        f"{secs(turn.caller_speech_end_s)}, "
        + (f"answered by {reply_name(turn)}" if turn.agent_turns else "no reply")
    ]
    if turn.caller_said is not None:
        lines.append(f"said: {turn.caller_said}")
    lines.append(f"transcript: {turn.transcript if turn.transcript is not None else '(none)'}")
    return "\n".join(lines)
