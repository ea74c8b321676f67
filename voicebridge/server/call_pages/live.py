"""What a live call's page adds: a bar with its state, and a script that follows the call.

The script asks ``events?after=N`` (N: the events the page was drawn from) every ``poll_s``;
when the call has new events, or has ended, it reloads the page, drawn again from everything the
call recorded (at the end, with its audio). Bounded: it stops after ``max_polls``, when the call
is gone from this service (404), and it never asks more than once per period.
"""

from __future__ import annotations

from typing import Final

from voicebridge.sim.callpage.text import esc

SCRIPT: Final = """(() => {
  const live = document.getElementById("live");
  if (!live) return;
  const every = Number(live.dataset.pollMs) || 1000;
  let left = Number(live.dataset.maxPolls) || 3600;
  const after = Number(live.dataset.after) || 0;
  const url = live.dataset.events + "?after=" + after;
  const poll = async () => {
    if (left-- <= 0) { live.textContent = "live: stopped following, reload to go on"; return; }
    try {
      const r = await fetch(url, {cache: "no-store", credentials: "same-origin"});
      if (r.status === 404) { live.textContent = "live: this call is no longer here"; return; }
      if (r.ok) {
        const d = await r.json();
        if (d.next > after || !d.live) { location.reload(); return; }
      }
    } catch (e) { /* the service restarts or the network blinked: ask again */ }
    setTimeout(poll, every);
  };
  setTimeout(poll, every);
})();
"""

STYLE: Final = (
    "<style>.vb-nav{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin:0 0 12px;"
    "font-size:13px}.vb-nav .live{color:#047857;font-weight:600}</style>"
)


def nav(key: str, *, live: bool, after: int, poll_s: float, max_polls: int, wav: bool) -> str:
    """The bar above the call: back to the list, the live state, the recording's file."""
    parts = ['<a href="../../calls">\u2190 all calls</a>']
    if live:
        parts.append(
            f'<span class="live" id="live" data-events="events" data-after="{after}" '
            f'data-poll-ms="{round(poll_s * 1000)}" data-max-polls="{max_polls}">'
            "live: this page follows the call</span>"
        )
    if wav:
        parts.append('<a href="recording.wav" download>recording (WAV)</a>')
    return f'{STYLE}<nav class="vb-nav" data-key="{esc(key)}">{"".join(parts)}</nav>'
