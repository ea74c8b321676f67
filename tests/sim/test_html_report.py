"""The HTML call report: self-contained, escaped, well-formed, and small."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from voicebridge.frames import PCM
from voicebridge.sim.html_report import render_html, write_html
from voicebridge.sim.report import CallReport, CheckpointReport, MarkerEvent, TurnReport
from voicebridge.sim.signals import speech_like

RATE = 8000
EVIL = "<script>alert(1)</script>"
VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}


def synthetic_call(duration_s: float = 60.0, *, evil: bool = False) -> tuple[CallReport, PCM, PCM]:
    """A call with a turn every 6 s: 1.5 s of caller speech, an answer after ~0.8 s, a barge-in
    and clear in every third turn."""
    n = round(duration_s * RATE)
    caller = np.zeros(n, np.int16)
    heard = np.zeros(n, np.int16)
    turns: list[TurnReport] = []
    markers: list[MarkerEvent] = []
    checkpoints: list[CheckpointReport] = []
    history: list[dict[str, object]] = []
    for i, start in enumerate(np.arange(0.5, duration_s - 4.0, 6.0)):
        start = float(start)
        end = start + 1.5
        s0 = round(start * RATE)
        caller[s0 : s0 + round(1.5 * RATE)] = speech_like(1.5, RATE)
        said = f"caller line {i} & <b>more</b>"
        transcript = EVIL if evil and i == 1 else f"caller line {i} & <b>more</b> heard"
        played = end + 0.8
        interrupted = i % 3 == 2
        reply_s = 1.2 if interrupted else 2.5
        p0 = round(played * RATE)
        heard[p0 : p0 + round(reply_s * RATE)] = speech_like(reply_s, RATE, f0=210.0) // 2
        texts = [f"Agent reply {i}, part one.", f"And part <two> of reply {i}."]
        turns.append(
            TurnReport(
                i,
                said,
                start,
                end,
                transcript,
                texts,
                texts[0],
                played - 0.1,
                played,
                played - end,
                interrupted,
            )
        )
        markers += [
            MarkerEvent(start, "caller_speech_start", ""),
            MarkerEvent(end, "caller_speech_end", ""),
            MarkerEvent(end + 0.3, "transcript", transcript),
            MarkerEvent(end + 0.5, "agent_text", texts[0]),
            MarkerEvent(end + 0.7, "agent_text", texts[1]),
            MarkerEvent(played, "played", f"turn {i}"),
        ]
        checkpoints.append(CheckpointReport(f"t{i}-0", end + 0.6, played + 1.0, False))
        if interrupted:
            checkpoints.append(CheckpointReport(f"t{i}-1", end + 0.8, None, True))
            markers += [
                MarkerEvent(played + 1.2, "barge_in", f"turn {i}"),
                MarkerEvent(played + 1.25, "clear", ""),
            ]
        else:
            checkpoints.append(CheckpointReport(f"t{i}-1", end + 0.8, played + 2.5, False))
        history += [
            {"role": "caller", "text": transcript, "turn": i, "interrupted": False},
            {"role": "agent", "text": texts[0], "turn": i, "interrupted": interrupted},
        ]
    markers += [MarkerEvent(duration_s / 2, "dtmf", "5"), MarkerEvent(duration_s, "close", "1000")]
    markers.sort(key=lambda m: m.t)
    report = CallReport(
        pipeline="demo <pipe>",
        codec="audio/x-mulaw",
        sample_rate=RATE,
        mode="fast",
        duration_s=duration_s,
        turns=turns,
        checkpoints=checkpoints,
        markers=markers,
        history=history,
        events=[{"t": 0.0, "event": "start"}],
        barge_ins=[{"t": m.t} for m in markers if m.kind == "barge_in"],
        closed_by="caller",
        close_code=1000,
        close_reason="call ended",
    )
    return report, caller, heard


class _Checker(HTMLParser):
    """Tracks the open-element stack and collects attribute values and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: set[str] = set()
        self.classes: set[str] = set()
        self.attr_values: list[str] = []
        self.text: list[str] = []
        self.titles: list[str] = []
        self.tags: set[str] = set()

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            self.attr_values.append(value or "")
            if name == "id" and value:
                self.ids.add(value)
            if name == "class" and value:
                self.classes.update(value.split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.stack and self.stack[-1] == "title":
            self.titles.append(data)


def _svg_width(page: str) -> int:
    found = re.search(r'<svg id="timeline"[^>]* width="(\d+)"', page)
    assert found is not None
    return int(found.group(1))


def _parse(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    return checker


def test_well_formed_with_both_lanes_and_markers() -> None:
    report, caller, heard = synthetic_call(20.0)
    page = render_html(report, caller, heard, RATE)
    assert page.startswith("<!DOCTYPE html>")
    checker = _parse(page)
    assert checker.errors == []
    assert checker.stack == []
    assert {"timeline", "lane-caller", "lane-heard"} <= checker.ids
    assert {
        "m-clear",
        "m-barge-in",
        "m-checkpoint",
        "cleared",
        "m-latency",
        "m-close",
        "m-dtmf",
        "m-transcript-span",
        "m-agent-text",
    } <= checker.classes
    assert {"svg", "polygon", "table"} <= checker.tags
    assert {"msg", "caller", "agent", "cut"} <= checker.classes  # history bubbles
    assert page.count('class="m m-clear') == sum(m.kind == "clear" for m in report.markers)


def test_all_text_appears_escaped() -> None:
    report, caller, heard = synthetic_call(20.0, evil=True)
    page = render_html(report, caller, heard, RATE)
    assert EVIL not in page
    assert "<b>" not in page and "<two>" not in page and "<pipe>" not in page
    assert html.escape(EVIL) in page
    text = "".join(_parse(page).text)
    tooltips = "\n".join(_parse(page).titles)
    for turn in report.turns:
        assert turn.transcript is not None and turn.caller_said is not None
        assert turn.transcript in text
        assert turn.caller_said in text
        assert turn.transcript in tooltips
        for piece in turn.agent_text:
            assert piece in text
            assert piece in tooltips


def test_no_external_resources() -> None:
    report, caller, heard = synthetic_call(20.0)
    report.turns[0].transcript = "see https://example.com/x and http://evil.test/y.js"
    report.markers.append(MarkerEvent(1.0, "transcript", "http://evil.test/y.js"))
    page = render_html(report, caller, heard, RATE)
    checker = _parse(page)
    assert not [v for v in checker.attr_values if re.search(r"https?:|//", v)]
    assert "https://example.com/x" in "".join(checker.text)
    for tag in ("script", "link", "img", "iframe", "object", "embed"):
        assert tag not in checker.tags
    assert not re.search(r"url\(|@import", page)
    clean = render_html(*synthetic_call(20.0), rate=RATE)
    assert "http://" not in clean and "https://" not in clean


def test_size_of_a_minute_long_call(tmp_path: Path) -> None:
    report, caller, heard = synthetic_call(60.0)
    path = tmp_path / "report.html"
    write_html(path, report, caller, heard, RATE)
    size = path.stat().st_size
    assert size < 600_000
    # Width follows the call length (120 px/s), the envelope is capped in columns.
    width = _svg_width(path.read_text(encoding="utf-8"))
    assert 60 * 120 <= width <= 60 * 120 + 200
    # An hour at 16 kHz still fits: the envelope has at most 3000 columns per lane.
    long_report = CallReport("p", "audio/x-l16", 16000, "fast", 3600.0)
    long_audio = np.zeros(3600 * 16000, np.int16)
    long_audio[::7] = 1000
    assert len(render_html(long_report, long_audio, long_audio[:1000], 16000)) < 600_000


def test_empty_call_renders() -> None:
    report = CallReport("p", "audio/x-mulaw", 8000, "realtime", 0.0)
    page = render_html(report, np.zeros(0, np.int16), np.zeros(0, np.int16), 8000)
    checker = _parse(page)
    assert checker.errors == [] and checker.stack == []
    assert {"lane-caller", "lane-heard"} <= checker.ids
    assert "No turns." in page


def test_short_call_has_minimum_width() -> None:
    report, caller, heard = synthetic_call(7.0)
    page = render_html(report, caller, heard, RATE)
    width = _svg_width(page)
    assert width >= 900


def test_chat_style_history_and_extra_keys() -> None:
    report = CallReport("p", "audio/x-mulaw", 8000, "fast", 2.0)
    report.history = [
        {"role": "user", "content": "<i>hi</i>"},
        {"role": "assistant", "content": "hello", "tool": {"name": "<x>"}},
        {"role": "system", "content": None},
    ]
    page = render_html(report, np.zeros(16000, np.int16), np.zeros(0, np.int16), 8000)
    checker = _parse(page)
    assert checker.errors == [] and checker.stack == []
    assert "<i>" not in page and "<x>" not in page
    text = "".join(checker.text)
    assert "<i>hi</i>" in text and '"name": "<x>"' in text
    assert {"caller", "agent", "other"} <= checker.classes
