"""The HTML call page as written: self-contained, escaped, well-formed, small, and numbered
the call's way. How it lays out in a browser is tests/sim/test_call_page_browser.py."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
import re
import wave
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from voicebridge.sim.callpage.assets import SCRIPT
from voicebridge.sim.callpage.audio import embed_audio
from voicebridge.sim.callpage.text import dbfs
from voicebridge.sim.html_report import render_html, write_html
from voicebridge.sim.report import CallReport, MarkerEvent

from .synthetic import EVIL, RATE, synthetic_call

VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}


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
        self.kinds: list[str] = []
        self.sources: list[str] = []

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name != "title":  # tooltips hold call text, and load nothing
                self.attr_values.append(value or "")
            if name == "id" and value:
                self.ids.add(value)
            if name == "class" and value:
                self.classes.update(value.split())
            if name == "title" and value:
                self.titles.append(value)
            if name == "data-kind" and value:
                self.kinds.append(value)
            if name == "src" and value:
                self.sources.append(value)

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
        if not self.stack or self.stack[-1] not in ("script", "style"):
            self.text.append(data)


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
    assert {"tl", "lane-caller", "lane-heard", "legend", "players", "playhead"} <= checker.ids
    assert {
        "clear",
        "barge-in",
        "checkpoint",
        "checkpoint-cleared",
        "latency",
        "close",
        "dtmf",
        "caller-speech",
        "agent-text",
        "played",
        "transcript",
    } <= set(checker.kinds)
    assert {"svg", "polygon", "table", "audio"} <= checker.tags
    assert {"msg", "caller", "agent", "cut"} <= checker.classes  # history bubbles
    clears = sum(m.kind == "clear" for m in report.markers)
    assert page.count('class="pk ev clear"') == page.count('class="vl clear"') == clears


def test_every_kind_drawn_is_in_the_legend() -> None:
    report, caller, heard = synthetic_call(20.0)
    report.markers.append(MarkerEvent(3.0, "something_new", "x"))
    page = render_html(report, caller, heard, RATE)
    timeline, legend = page.split('id="legend"', 1)
    drawn = set(re.findall(r'data-kind="([^"]+)"', timeline))
    explained = set(re.findall(r'data-kind="([^"]+)"', legend))
    assert {"played", "transcript", "other", "end", "playhead"} <= drawn
    assert drawn <= explained


def test_positions_are_shares_of_the_call() -> None:
    """The timeline fits any width: every mark sits at its share of the call, in percent."""
    report, caller, heard = synthetic_call(20.0)
    page = render_html(report, caller, heard, RATE)
    found = re.search(r'id="tl" data-duration="([\d.]+)"', page)
    assert found is not None and float(found.group(1)) == 20.0
    (dtmf,) = [m for m in report.markers if m.kind == "dtmf"]
    assert f'data-t0="{dtmf.t:g}" style="left:{dtmf.t / 20 * 100:g}%"' in page
    assert "width=" not in page.split('id="tl"', 1)[1].split("</svg>", 1)[0]  # no fixed pixels


def test_turn_numbers_are_the_calls_own() -> None:
    report, caller, heard = synthetic_call(20.0)
    report.turns[0].agent_turns = [1, 2]  # a filler and the reply in one row
    report.turns[1].agent_turns = []  # no reply
    page = render_html(report, caller, heard, RATE)
    rows = re.findall(
        r'<tr data-turns="([\d ]*)"><td class="[^"]*" data-label="turn">([^<]*)<', page
    )
    assert rows[:3] == [("1 2", "1, 2"), ("", "\u2013"), ("3", "3")]
    cps = re.findall(r'data-name="turn-(\d+)/piece-\d"(?: data-turn="(\d+)")?', page)
    assert cps and all(a == b for a, b in cps)
    badges = re.findall(
        r'class="pk say" data-kind="agent-text" data-t0="[\d.]+" data-turn="(\d+)"', page
    )
    assert sorted(set(badges)) == ["1", "2", "3"]
    bubbles = re.findall(r'class="msg agent[^"]*" data-turn="(\d+)"', page)
    assert bubbles == ["1", "2", "3"]


def test_dbfs_is_never_negative_zero() -> None:
    assert dbfs(-0.2) == "0 dBFS" and dbfs(0.0) == "0 dBFS" and dbfs(-0.49) == "0 dBFS"
    assert dbfs(-12.4) == "\u221212 dBFS" and dbfs(-0.6) == "\u22121 dBFS"
    assert dbfs(None) == "silent"
    report, caller, heard = synthetic_call(20.0)
    full = caller.copy()
    full[100] = -32768  # a full-scale sample: peak 0 dBFS
    page = render_html(report, full, heard, RATE)
    assert "peak 0 dBFS" in page and "-0 dBFS" not in page and "\u22120 dBFS" not in page


def test_all_text_appears_escaped() -> None:
    report, caller, heard = synthetic_call(20.0, evil=True)
    page = render_html(report, caller, heard, RATE)
    assert EVIL not in page
    assert "<b>" not in page and "<two>" not in page and "<pipe>" not in page
    assert html.escape(EVIL) in page
    checker = _parse(page)
    text = "".join(checker.text)
    tooltips = "\n".join(checker.titles)
    for turn in report.turns:
        assert turn.transcript is not None and turn.caller_said is not None
        assert turn.transcript in text
        assert turn.caller_said in text
        assert turn.transcript in tooltips
        for piece in turn.agent_text:
            assert piece in text
            assert piece in tooltips
    assert page.count("<script>") == 1  # the page's own, and no other


def test_no_external_resources() -> None:
    report, caller, heard = synthetic_call(20.0)
    report.turns[0].transcript = "see https://example.com/x and http://evil.test/y.js"
    report.markers.append(MarkerEvent(1.0, "transcript", "http://evil.test/y.js"))
    page = render_html(report, caller, heard, RATE)
    checker = _parse(page)
    assert checker.sources and all(s.startswith("data:audio/wav;base64,") for s in checker.sources)
    others = [v for v in checker.attr_values if v not in checker.sources]
    assert not [v for v in others if re.search(r"https?:|//", v)]
    assert "https://example.com/x" in "".join(checker.text)
    for tag in ("link", "img", "iframe", "object", "embed"):
        assert tag not in checker.tags
    assert not re.search(r"url\(|@import", page)
    assert "default-src 'none'" in page  # the policy forbids every fetch as well
    clean = render_html(*synthetic_call(20.0), rate=RATE)
    assert "http://" not in clean and "https://" not in clean


def test_the_script_is_the_only_one_allowed_to_run() -> None:
    page = render_html(*synthetic_call(8.0), rate=RATE)
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page
    assert f"<script>{SCRIPT}</script>" in page


def test_players_hold_each_side_and_the_mix() -> None:
    report, caller, heard = synthetic_call(6.0)
    checker = _parse(render_html(report, caller, heard, RATE))
    decoded = []
    for uri in checker.sources:
        with wave.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
            decoded.append(np.frombuffer(w.readframes(w.getnframes()), "<i2"))
    mixed, left, right = decoded
    assert len(mixed) == len(left) == len(right) == 6 * RATE  # as long as the timeline
    assert np.array_equal(left, caller) and np.array_equal(right, heard)
    assert np.array_equal(mixed, np.clip(caller.astype(np.int32) + heard, -32768, 32767))


def test_audio_budget_drops_the_mix_then_everything() -> None:
    caller = np.ones(8000, np.int16)
    per_track = 44 + 2 * 8000
    full = embed_audio(caller, caller, 8000, 8000, 3 * per_track)
    assert [t.key for t in full.tracks] == ["call", "caller", "agent"] and full.note == ""
    pair = embed_audio(caller, caller, 8000, 8000, 3 * per_track - 1)
    assert [t.key for t in pair.tracks] == ["caller", "agent"] and "mixed" in pair.note
    none = embed_audio(caller, caller, 8000, 8000, 2 * per_track - 1)
    assert none.tracks == [] and "--out" in none.note
    report = CallReport("p", "audio/x-l16", 8000, "fast", 1.0)
    page = render_html(report, caller, caller, 8000, audio_budget_bytes=0)
    assert "<audio" not in page and 'id="playhead"' not in page and "--out" in page


def test_size_of_a_minute_long_call(tmp_path: Path) -> None:
    report, caller, heard = synthetic_call(60.0)
    path = tmp_path / "report.html"
    write_html(path, report, caller, heard, RATE, audio_budget_bytes=0)
    assert path.stat().st_size < 400_000  # the page without its audio
    # The audio is three WAV tracks as long as the call, as base64.
    with_audio = len(render_html(report, caller, heard, RATE).encode())
    audio = 3 * math.ceil((44 + 2 * 60 * RATE) / 3) * 4
    assert path.stat().st_size + audio <= with_audio < path.stat().st_size + audio + 2000
    # An hour at 16 kHz still fits: the envelope has at most 3000 columns per lane, the audio
    # is past the budget and left out.
    long_report = CallReport("p", "audio/x-l16", 16000, "fast", 3600.0)
    long_audio = np.zeros(3600 * 16000, np.int16)
    long_audio[::7] = 1000
    assert len(render_html(long_report, long_audio, long_audio[:1000], 16000)) < 400_000


def test_empty_call_renders() -> None:
    report = CallReport("p", "audio/x-mulaw", 8000, "realtime", 0.0)
    page = render_html(report, np.zeros(0, np.int16), np.zeros(0, np.int16), 8000)
    checker = _parse(page)
    assert checker.errors == [] and checker.stack == []
    assert {"lane-caller", "lane-heard"} <= checker.ids
    assert "No turns." in page


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
