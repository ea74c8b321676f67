"""The list of recent and live calls (``GET /calls``): one row per call, each opening its page.

No script: the page refreshes itself every few seconds while a call on it is live. Every value
from a call is escaped (call ids come from Plivo's side of the wire).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from voicebridge.server.call_pages.summary import CallSummary
from voicebridge.sim.callpage.text import DASH, esc, secs

REFRESH_S: Final = 5

_CSS: Final = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#111827;
background:#f9fafb}
h1{font-size:20px;margin:0 0 4px}.sub{color:#6b7280;margin:0 0 16px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e5e7eb}
th,td{padding:6px 10px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#6b7280}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.live{color:#047857;font-weight:600}.id{font-family:ui-monospace,monospace;word-break:break-all}
@media (max-width:700px){body{margin:10px}thead{display:none}tr{display:block;
border-bottom:2px solid #e5e7eb}td{display:block;border:0;padding:2px 8px}
td::before{content:attr(data-label) ": ";color:#6b7280}}
"""
_WORDS: Final = frozenset({"call", "outcome", "pipeline"})  # columns that are not figures
_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class Row:
    key: str
    call_id: str
    pipeline: str
    started_at: float | None
    live: bool
    summary: CallSummary


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t is not None else DASH


def _row(row: Row) -> str:
    s = row.summary
    latency = s.latency()
    status = (
        '<span class="live">live</span>' if row.live else esc(s.outcome or "ended (no end event)")
    )
    cells = [
        (
            "call",
            f'<a class="id" href="calls/{esc(row.key)}/page">{esc(row.call_id or row.key)}</a>',
        ),
        ("started (UTC)", esc(_when(row.started_at))),
        ("outcome", status),
        ("duration", esc(secs(s.duration_s, 1))),
        ("turns", str(s.turns)),
        ("latency p50", esc(secs(latency["p50"]))),
        ("latency max", esc(secs(latency["max"]))),
        ("barge-ins", str(s.barge_ins)),
        ("pipeline", esc(row.pipeline)),
    ]
    tds = "".join(
        f'<td data-label="{name}"{"" if name in _WORDS else " class=num"}>{value}</td>'
        for name, value in cells
    )
    return f'<tr data-key="{esc(row.key)}" data-live="{str(row.live).lower()}">{tds}</tr>'


def list_page(rows: list[Row], note: str) -> str:
    """The page; ``note`` says where the rows come from (this worker, the events dir)."""
    head = "".join(
        f"<th>{c}</th>"
        for c in (
            "call",
            "started (UTC)",
            "outcome",
            "duration",
            "turns",
            "latency p50",
            "latency max",
            "barge-ins",
            "pipeline",
        )
    )
    body = "".join(_row(r) for r in rows)
    table = (
        f'<table id="calls"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        if rows
        else '<p class="sub" id="no-calls">No calls yet.</p>'
    )
    refresh = (
        f'<meta http-equiv="refresh" content="{REFRESH_S}"/>' if any(r.live for r in rows) else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"/>{refresh}'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>'
        f"<title>voicebridge calls</title><style>{_CSS}</style></head><body>"
        f'<h1>Calls</h1><p class="sub">{esc(note)}</p>{table}</body></html>\n'
    )
