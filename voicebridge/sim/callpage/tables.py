"""The figures and the words of the call: header cards, the turn table, the conversation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from voicebridge.sim.callpage.text import DASH, compact, esc, secs, turns_label
from voicebridge.sim.callpage.timeline import latency_class
from voicebridge.sim.report import CallReport, TurnReport

MAX_ROWS: Final = 2000

_DOT: Final = " \u00b7 "
_CALLER_ROLES: Final = frozenset({"caller", "user", "human"})
_AGENT_ROLES: Final = frozenset({"agent", "assistant", "bot"})


def _card(key: str, value: str, extra: str = "", bad: bool = False) -> str:
    small = f" <small>{extra}</small>" if extra else ""
    cls = "card bad" if bad else "card"
    return f'<div class="{cls}"><div class="k">{key}</div><div class="v">{value}{small}</div></div>'


def header(report: CallReport) -> str:
    s = report.summary()
    p50, p95, pmax = s["latency_p50_s"], s["latency_p95_s"], s["latency_max_s"]
    close = report.closed_by or "?"
    if report.close_code is not None:
        close += f" ({report.close_code}{' ' + report.close_reason if report.close_reason else ''})"
    cards = [
        _card("duration", f"{report.duration_s:.1f} s"),
        _card("turns", str(s["turns"]), f"{s['answered_turns']} answered"),
        _card("latency p50", secs(p50)),
        _card("latency p95", secs(p95), f"max {secs(pmax)}" if pmax is not None else ""),
        _card("barge-ins", str(s["barge_ins"])),
        _card(
            "checkpoints acked",
            f"{s['checkpoints_acked']}/{s['checkpoints_sent']}",
            f"{s['checkpoints_cleared']} cleared" if s["checkpoints_cleared"] else "",
        ),
        _card("closed by", esc(close)),
    ]
    if report.protocol_errors:
        cards.append(_card("protocol errors", str(len(report.protocol_errors)), bad=True))
    sub = (
        f"{esc(report.codec)} @ {report.sample_rate} Hz · mode {esc(report.mode)} · "
        f"{report.duration_s:.2f} s"
    )
    out = [
        f"<h1>voicebridge call · {esc(report.pipeline)}</h1>",
        f'<p class="sub">{sub}</p>',
        f'<div class="cards">{"".join(cards)}</div>',
    ]
    if report.protocol_errors:
        items = "".join(f"<li>{esc(e)}</li>" for e in report.protocol_errors[:MAX_ROWS])
        out.append(f'<div class="errors"><strong>Protocol errors</strong><ul>{items}</ul></div>')
    return "".join(out)


_COLUMNS: Final = (
    "turn",
    "caller speech",
    "caller said",
    "transcript",
    "agent reply",
    "heard by caller",
    "latency",
    "interrupted",
)


def _cell(label: str, value: str | None, cls: str = "") -> str:
    """A cell; ``data-label`` names its column where a narrow screen shows rows as cards."""
    if value is None or value == "":
        return f'<td class="none" data-label="{label}">{DASH}</td>'
    attr = f' class="{cls}"' if cls else ""
    return f'<td{attr} data-label="{label}">{esc(value)}</td>'


def turn_table(turns: Iterable[TurnReport]) -> str:
    """One row per caller utterance (the greeting has its own), numbered by the call's turns."""
    rows = []
    for t in list(turns)[:MAX_ROWS]:
        lat = t.latency_s
        when = (
            f"{t.caller_speech_start_s:.2f}{DASH}{t.caller_speech_end_s:.2f} s"
            if t.caller_speech_start_s is not None and t.caller_speech_end_s is not None
            else None
        )
        turn_attr = f' data-turns="{" ".join(map(str, t.agent_turns))}"'
        rows.append(
            f"<tr{turn_attr}>"
            + _cell("turn", turns_label(t.agent_turns), "num turn")
            + _cell("caller speech", when, "num")
            + _cell("caller said", t.caller_said)
            + _cell("transcript", t.transcript)
            + _cell("agent reply", " ".join(t.agent_text))
            + _cell("heard by caller", t.heard_text)
            + (
                _cell("latency", secs(lat), f"num {latency_class(lat)}")
                if lat is not None
                else _cell("latency", None)
            )
            + (
                '<td class="yes" data-label="interrupted">yes</td>'
                if t.interrupted
                else '<td data-label="interrupted">no</td>'
            )
            + "</tr>"
        )
    if not rows:
        return '<p class="sub">No turns.</p>'
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    return (
        f'<table class="turns"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def history(entries: Sequence[dict[str, object]]) -> str:
    """Chat bubbles: the caller left, the agent right, anything else centred as raw data.

    Entries are ``{"role", "text", "turn", "interrupted"}`` (voicebridge's history) or
    ``{"role", "content"}`` (chat-API style); other keys are shown compactly, not dropped.
    """
    if not entries:
        return '<p class="sub">No history.</p>'
    items = []
    for entry in entries[:MAX_ROWS]:
        role = str(entry.get("role") or "entry")
        content = entry.get("text", entry.get("content"))
        text = content if isinstance(content, str) else compact(content)
        meta = [esc(role)]
        turn = entry.get("turn")
        if turn is not None:
            meta.append(f'turn <b class="tn">{esc(turn)}</b>')
        if entry.get("interrupted"):
            meta.append("interrupted")
        shown = {"role", "text", "content", "turn", "interrupted"}
        rest = {k: v for k, v in entry.items() if k not in shown}
        if rest:
            text = f"{text}\n{compact(rest)}" if text else compact(rest)
        cls = "caller" if role in _CALLER_ROLES else "agent" if role in _AGENT_ROLES else "other"
        cut = " cut" if entry.get("interrupted") else ""
        attr = f' data-turn="{esc(turn)}"' if turn is not None else ""
        items.append(
            f'<div class="msg {cls}{cut}"{attr}><span class="role">{_DOT.join(meta)}</span>'
            f'<span class="body">{esc(text)}</span></div>'
        )
    return f'<div class="chat">{"".join(items)}</div>'


def details(title: str, rows: Sequence[object]) -> str:
    if not rows:
        return ""
    shown = rows[:MAX_ROWS]
    more = f" (first {len(shown)} of {len(rows)})" if len(rows) > len(shown) else ""
    body = "\n".join(compact(r) for r in shown)
    return (
        f"<details><summary>{esc(title)} ({len(rows)}){more}</summary>"
        f'<div class="panel"><pre>{esc(body)}</pre></div></details>'
    )
