"""What each mark on the timeline means, for the kinds the call actually has.

A kind's swatch is drawn with the same CSS classes as its mark, so the legend cannot drift from
the drawing.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Final

from voicebridge.sim.callpage.text import esc

# kind -> (swatch classes, what it means); in reading order.
KINDS: Final[dict[str, tuple[str, str]]] = {
    "caller-wave": ("sw-wave caller", "caller audio (light: peak, dark: loudness)"),
    "agent-wave": ("sw-wave agent", "agent audio, as the caller heard it"),
    "caller-speech": ("sw-utt", "caller speech, with what the transcriber understood"),
    "speech-edge": ("sw-edge", "caller speech starts / ends"),
    "transcript": ("mk tri-down", "a final transcript arrived"),
    "latency": ("sw-lat", "latency: caller stops \u2192 first agent audio played"),
    "agent-text": ("sw-say", "agent text; the badge is its turn number"),
    "checkpoint": ("sw-cp acked", "checkpoint: sent \u2192 played (Plivo's playedStream)"),
    "checkpoint-cleared": ("sw-cp cleared", "checkpoint dropped by a clear \u00d7"),
    "checkpoint-pending": ("sw-cp pending", "checkpoint never acknowledged"),
    "played": ("mk tri-up", "Plivo reported a checkpoint played"),
    "barge-in": ("sw-vl barge-in", "barge-in: the caller cut the agent off"),
    "clear": ("sw-vl clear", "clear: clearAudio sent, queued agent audio dropped"),
    "hangup": ("sw-vl hangup", "the agent asked to hang up"),
    "close": ("sw-vl close", "the call closed"),
    "dtmf": ("sw-ev dtmf", "keypad digit (DTMF)"),
    "other": ("sw-ev other", "another event (hover for its text)"),
    "end": ("sw-end", "end of the call"),
    "playhead": ("sw-playhead", "playhead: follows the player below; click the timeline to seek"),
}

TURN_NOTE: Final = (
    "Turn numbers are the call's own: turn N is the agent's N-th reply (a greeting counts), the "
    "number in its events and in its checkpoints' names <code>turn-N/piece-K</code>. The badges, "
    "the turn table and the conversation use the same numbers. Hover a mark for its full text and "
    "times."
)


def legend(kinds: Set[str]) -> str:
    """The legend of the kinds drawn, in :data:`KINDS` order, then the turn-number note."""
    items = []
    for kind, (swatch, meaning) in KINDS.items():
        if kind in kinds:
            items.append(
                f'<span class="lg" data-kind="{kind}"><i class="sw {swatch}"></i>'
                f"{esc(meaning)}</span>"
            )
    unknown = sorted(kinds - KINDS.keys())
    for kind in unknown:  # a kind drawn without a legend entry still gets a line
        items.append(f'<span class="lg" data-kind="{esc(kind)}">{esc(kind)}</span>')
    return (
        f'<div class="legend" id="legend">{"".join(items)}</div>'
        f'<p class="turn-note"><b class="tn">N</b> {TURN_NOTE}</p>'
    )
