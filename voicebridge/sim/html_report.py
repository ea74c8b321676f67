"""A one-file HTML page of a simulated call, for people: see and hear the call, not read it.

Both channels are drawn as waveforms on one timeline that fits the page at any width (caller on
top, the agent as the caller heard it below), with what the transcriber understood over the
caller's speech, what the agent said (badged with its turn number), the latency of every turn as
a bracket, checkpoints as bars from sent to acknowledged, and clears and barge-ins as red lines
through everything. Players for the call, the caller and the agent move a playhead along it.
Below come the figures per turn and the agent's conversation history. The parts live in
:mod:`voicebridge.sim.callpage`.

The file is self-contained (inline CSS and script, audio as ``data:`` URIs, no fonts or images
fetched) so it can be attached to a CI run or mailed and opened anywhere, offline; its Content
Security Policy forbids every fetch and every script but its own. Every string from the call
goes through :func:`html.escape`: transcripts are whatever a caller said, ``<script>`` included.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicebridge.frames import PCM
from voicebridge.sim.callpage.assets import CSS, SCRIPT
from voicebridge.sim.callpage.audio import AUDIO_BUDGET_BYTES, Audio, embed_audio
from voicebridge.sim.callpage.legend import legend
from voicebridge.sim.callpage.tables import details, header, history, turn_table
from voicebridge.sim.callpage.text import esc
from voicebridge.sim.callpage.timeline import Timeline
from voicebridge.sim.report import CallReport, MarkerEvent


def _players(audio: Audio) -> str:
    players = "".join(
        f'<label class="player"><span>{esc(t.label)}</span>'
        f'<audio class="track" controls preload="metadata" data-track="{t.key}" '
        f'src="{t.uri}"></audio></label>'
        for t in audio.tracks
    )
    note = f'<p class="note">{esc(audio.note)}</p>' if audio.note else ""
    return (f'<div class="players" id="players">{players}</div>' if players else "") + note


@dataclass(frozen=True)
class PageExtras:
    """What a page served by the service adds to the file the simulator writes: ``top``, HTML
    put above the call (the caller's own markup: escape what it holds), a ``script`` of its own
    (allowed by its hash like the page's), and ``connect_src``, what that script may fetch."""

    top: str = ""
    script: str = ""
    connect_src: str = "'none'"


def _digest(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def _csp(extras: PageExtras | None = None) -> str:
    """Nothing may be fetched; only this page's own scripts run (by their hashes), so even a
    transcript that slipped past escaping could not run code."""
    scripts = " ".join(f"'sha256-{_digest(s)}'" for s in (SCRIPT, extras and extras.script) if s)
    connect = f"; connect-src {extras.connect_src}" if extras and extras.script else ""
    return (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; media-src data:; "
        f"script-src {scripts}{connect}"
    )


def render_html(
    report: CallReport,
    caller: PCM,
    heard: PCM,
    rate: int,
    *,
    audio_budget_bytes: int = AUDIO_BUDGET_BYTES,
    audio: Audio | None = None,
    extras: PageExtras | None = None,
) -> str:
    """The report page as one self-contained HTML string.

    ``caller`` and ``heard`` are the two channels of the call's WAV (the caller, and the agent as
    the caller heard it) at ``rate`` Hz. They are drawn as an envelope of at most 3000 columns per
    lane, and embedded for the players while they fit ``audio_budget_bytes`` of WAV data.
    ``audio`` replaces those players (the service passes none for a call it did not record);
    ``extras`` is what the service's call pages add (:class:`PageExtras`).
    """
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    caller = np.asarray(caller, dtype=np.int16)
    heard = np.asarray(heard, dtype=np.int16)
    timeline = Timeline(report, caller, heard, rate)
    if audio is None:
        audio = embed_audio(caller, heard, rate, timeline.n_samples, audio_budget_bytes)
    drawn = timeline.render(with_playhead=bool(audio.tracks))
    markers = [_marker_row(m) for m in report.markers]
    body = [
        extras.top if extras else "",
        header(report),
        "<h2>Timeline</h2>",
        f'<div class="panel">{drawn}{_players(audio)}{legend(timeline.kinds)}</div>',
        "<h2>Turns</h2>",
        turn_table(report.turns),
        "<h2>Conversation history</h2>",
        history(report.history),
        details("Timeline markers", markers),
        details("Barge-ins", report.barge_ins),
        details("Wire events", report.events),
    ]
    title = f"voicebridge call · {report.pipeline}"
    more = f"<script>{extras.script}</script>" if extras and extras.script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        f'<meta http-equiv="Content-Security-Policy" content="{_csp(extras)}"/>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}<script>{SCRIPT}</script>{more}</body></html>\n"
    )


def _marker_row(m: MarkerEvent) -> dict[str, Any]:
    row: dict[str, Any] = {"t": round(m.t, 3), "kind": m.kind, "text": m.text}
    if m.turn is not None:
        row["turn"] = m.turn
    return row


def write_html(
    path: str | os.PathLike[str],
    report: CallReport,
    caller: PCM,
    heard: PCM,
    rate: int,
    *,
    audio_budget_bytes: int = AUDIO_BUDGET_BYTES,
) -> None:
    """Write :func:`render_html` to ``path`` as UTF-8."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_html(report, caller, heard, rate, audio_budget_bytes=audio_budget_bytes))
