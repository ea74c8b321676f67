"""The call page in a real browser (headless Chromium) at a desktop and a phone width.

A short call is simulated through the real service (scripted transcriber and dialogue, a tone
speaker: no models) with a long reply and two barge-ins, its page is written, and the page is
checked the way a reader meets it: by layout, not by its HTML source. Skipped where Chromium or
the ``playwright`` package is missing; ``.ci/run`` installs both (Debian's ``chromium``; no
browser is ever downloaded by playwright).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from voicebridge.call.ledger import checkpoint_turn
from voicebridge.config import ServiceSettings, load_pipeline_text
from voicebridge.plivo.formats import StreamFormat
from voicebridge.sim.analysis import build_report
from voicebridge.sim.html_report import write_html
from voicebridge.sim.report import CallReport
from voicebridge.sim.signals import speech_like
from voicebridge.sim.simulate import CallerLine, simulate_call

from .synthetic import synthetic_call

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install -e .[dev])"
)
CHROMIUM = os.environ.get("VOICEBRIDGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)",
        allow_module_level=True,
    )

# Headless, offline, quiet: no sandbox (CI runs as root), no network, no updates, and audio may
# play without a click (muted: nothing needs to be heard, only to advance).
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
]
WIDTHS = [1280, 390]
RATE = 8000
LONG = (
    "We are open from seven in the morning until six in the evening on every weekday and on "
    "Saturdays, from eight until two on Sundays, and closed only on the public holidays"
)
PIPELINE = f"""
name: call-page
stages:
  - type: decode
  - type: vad
    params: {{min_silence_ms: 300, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: ["when are you open", "and on sunday", "goodbye"]}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{greeting: "Hello, bakery here.", reply: "{LONG}. Anything else?", think_s: 0.2}}
  - type: voicebridge.testing:ToneSpeaker
    params: {{ms_per_char: 12}}
  - type: encode
"""


@dataclass
class CallPage:
    path: Path
    report: CallReport


@pytest.fixture(scope="module")
def call_page(tmp_path_factory: pytest.TempPathFactory) -> CallPage:
    async def simulate() -> CallPage:
        lines = [
            CallerLine("when are you open", speech_like(1.2, RATE)),
            CallerLine("and on sunday", speech_like(0.9, RATE)),
            CallerLine("goodbye", speech_like(0.6, RATE)),
        ]
        call = await simulate_call(
            load_pipeline_text(PIPELINE),
            StreamFormat("audio/x-l16", RATE),
            lines,
            settings=ServiceSettings(),
            interrupt_after_s=2.0,
        )
        report = build_report(call)
        path = tmp_path_factory.mktemp("page") / "call.html"
        write_html(path, report, call.record.caller_audio, call.record.heard_audio, RATE)
        return CallPage(path, report)

    # On a thread of its own: playwright's sync API keeps an event loop running on this one.
    with ThreadPoolExecutor(1) as pool:
        page = pool.submit(asyncio.run, simulate()).result()
    kinds = {m.kind for m in page.report.markers}
    assert {"barge_in", "clear", "played", "transcript"} <= kinds  # what the checks are about
    return page


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Opened:
    page: Any
    width: int
    errors: list[str]


@pytest.fixture(scope="module", params=WIDTHS, ids=[f"{w}px" for w in WIDTHS])
def context(request: pytest.FixtureRequest, browser: Any) -> Iterator[Any]:
    """One browser context per width (making one costs more than a page in it)."""
    ctx = browser.new_context(viewport={"width": request.param, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture
def opened(context: Any, call_page: CallPage) -> Iterator[Opened]:
    """The page, freshly loaded for each test."""
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(call_page.path.as_uri())
    page.wait_for_function("!document.getElementById('tl-tools').hidden")  # the script ran
    yield Opened(page, page.viewport_size["width"], errors)
    page.close()


BOXES = """(sel) => Array.from(document.querySelectorAll(sel))
  .filter((el) => el.getClientRects().length)
  .map((el) => { const r = el.getBoundingClientRect();
    return {l: r.left, r: r.right, t: r.top, b: r.bottom, text: el.textContent,
            kind: el.dataset.kind}; })"""


def overlaps(boxes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    found = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            across = a["l"] < b["r"] - 0.5 and b["l"] < a["r"] - 0.5
            if across and a["t"] < b["b"] - 0.5 and b["t"] < a["b"] - 0.5:
                found.append((a["text"], b["text"]))
    return found


def test_the_whole_call_fits_the_width(opened: Opened, call_page: CallPage) -> None:
    page = opened.page
    doc = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert doc[0] <= doc[1] == opened.width
    scroller = page.evaluate(
        "(() => { const s = document.getElementById('tl-scroll');"
        " return [s.scrollWidth, s.clientWidth]; })()"
    )
    assert scroller[0] <= scroller[1]  # nothing of the timeline is scrolled out of view
    duration = float(page.get_attribute("#tl", "data-duration") or 0)
    assert duration >= call_page.report.duration_s
    plot = page.locator("#lane-caller").bounding_box()
    end = page.locator(".tl-end").bounding_box()
    assert plot is not None and end is not None
    assert plot["x"] >= 0 and end["x"] + end["width"] <= opened.width
    assert end["x"] + end["width"] == pytest.approx(plot["x"] + plot["width"], abs=1.5)
    # The last mark of the call (it closes) is drawn inside the plot.
    last = page.locator(".vl.close").bounding_box()
    assert last is not None and plot["x"] <= last["x"] <= plot["x"] + plot["width"]


def test_no_two_labels_overlap(opened: Opened) -> None:
    labels = opened.page.evaluate(BOXES, "#tl .pk")
    kinds = {b["kind"] for b in labels}
    assert {"barge-in", "clear", "agent-text", "caller-speech", "latency"} <= kinds
    assert overlaps(labels) == []
    ticks = opened.page.evaluate(BOXES, "#tl .tk")
    assert len(ticks) >= 2 and overlaps(ticks) == []


def test_the_legend_names_every_kind_of_mark(opened: Opened) -> None:
    drawn = set(
        opened.page.evaluate(
            "Array.from(document.querySelectorAll('#tl [data-kind]'), e => e.dataset.kind)"
        )
    )
    legend = set(
        opened.page.evaluate(
            "Array.from(document.querySelectorAll('#legend .lg'), e => e.dataset.kind)"
        )
    )
    assert {"played", "transcript", "barge-in", "clear"} <= drawn  # the triangles and red lines
    assert drawn <= legend
    assert opened.page.locator("#legend .lg").filter(has_text="Plivo reported").is_visible()


def test_turn_numbers_agree_everywhere(opened: Opened, call_page: CallPage) -> None:
    page = opened.page
    table = page.evaluate(
        "Array.from(document.querySelectorAll('table.turns tbody tr'),"
        " r => [r.dataset.turns, r.children[5].textContent])"
    )
    bubbles = page.evaluate(
        "Array.from(document.querySelectorAll('.msg.agent'),"
        " m => [m.dataset.turn, m.querySelector('.body').textContent])"
    )
    badges = page.evaluate("Array.from(document.querySelectorAll('#tl .say'), e => e.dataset.turn)")
    checkpoints = page.evaluate(
        "Array.from(document.querySelectorAll('#tl .cp'), e => [e.dataset.name, e.dataset.turn])"
    )
    table_turns = {int(n) for turns, _ in table for n in (turns or "").split()}
    named = {checkpoint_turn(c.name) for c in call_page.report.checkpoints}
    assert table_turns == named == {int(t) for t, _ in bubbles} == {int(t) for t in badges}
    assert table_turns == {1, 2, 3, 4}  # the greeting is the call's turn 1
    for name, turn in checkpoints:
        assert int(turn) == checkpoint_turn(name)
    # A bubble's turn is the table row that holds that reply: the same heard text.
    heard_by_turn = {int(n): heard for turns, heard in table for n in (turns or "").split()}
    for turn, text in bubbles:
        assert heard_by_turn[int(turn)] == text


def test_long_agent_text_is_readable_in_full(opened: Opened) -> None:
    page = opened.page
    label = page.locator("#tl .say").filter(has_text=LONG[:40]).first
    assert label.text_content().endswith(LONG + ".")
    label.scroll_into_view_if_needed()
    box = label.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= opened.width
    clipped = label.evaluate(
        "e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1"
    )
    assert not clipped
    # Its last words are on screen, inside its box, not under another mark.
    end = label.evaluate(
        """e => { const t = e.querySelector('.txt').lastChild, r = document.createRange();
        r.setStart(t, t.length - 5); r.setEnd(t, t.length);
        const b = r.getBoundingClientRect(), x = b.left + b.width / 2, y = b.top + b.height / 2;
        return [b.left, b.right, e.contains(document.elementFromPoint(x, y))]; }"""
    )
    assert box["x"] <= end[0] and end[1] <= box["x"] + box["width"] + 0.5 and end[2]
    bubble = page.locator(".msg.agent").filter(has_text=LONG[:40]).first
    assert bubble.is_visible() and LONG[:60] in bubble.text_content()


def test_players_play_and_move_the_playhead(opened: Opened, call_page: CallPage) -> None:
    page = opened.page
    tracks = page.evaluate(
        "Array.from(document.querySelectorAll('audio.track'),"
        " a => [a.dataset.track, a.src.slice(0, 22)])"
    )
    assert tracks == [[k, "data:audio/wav;base64,"] for k in ("call", "caller", "agent")]
    page.wait_for_function(
        "Array.from(document.querySelectorAll('audio.track')).every(a => a.readyState >= 1)"
    )
    durations = page.evaluate(
        "Array.from(document.querySelectorAll('audio.track'), a => a.duration)"
    )
    timeline = float(page.get_attribute("#tl", "data-duration") or 0)
    for d in durations:
        assert d == pytest.approx(timeline, abs=0.01)
        assert d == pytest.approx(call_page.report.duration_s, abs=0.1)
    played = page.evaluate(
        """async () => {
        const a = document.querySelector('audio.track[data-track="caller"]');
        const moved = new Promise(r => a.addEventListener('timeupdate',
            () => { if (a.currentTime > 0) r(); }));
        await a.play();
        await moved;
        a.pause();
        const head = document.getElementById('playhead');
        const lane = document.getElementById('lane-caller');
        const h = head.getBoundingClientRect(), l = lane.getBoundingClientRect();
        return [a.currentTime, head.hidden, (h.left + 1 - l.left) / l.width * a.duration]; }"""
    )
    at, hidden, drawn_at = played
    assert at > 0 and not hidden
    assert drawn_at == pytest.approx(at, abs=0.25)  # the playhead is where the audio is
    assert opened.errors == []


def test_zoom_scrolls_the_timeline_not_the_page(opened: Opened) -> None:
    page = opened.page
    for _ in range(3):
        page.click("button[data-zoom=in]")
    widths = page.evaluate(
        "(() => { const s = document.getElementById('tl-scroll');"
        " return [s.scrollWidth, s.clientWidth, document.documentElement.scrollWidth]; })()"
    )
    assert widths[0] > 4 * widths[1] and widths[2] <= opened.width
    assert overlaps(page.evaluate(BOXES, "#tl .pk")) == []
    page.click("button[data-zoom=fit]")
    fitted = page.evaluate(
        "(() => { const s = document.getElementById('tl-scroll');"
        " return s.scrollWidth - s.clientWidth; })()"
    )
    assert fitted <= 0
    assert overlaps(page.evaluate(BOXES, "#tl .pk")) == []


def test_no_console_errors(opened: Opened) -> None:
    opened.page.click("#lane-heard")  # a click on the timeline seeks: exercises the script
    head = opened.page.locator("#playhead")
    assert head.is_visible()
    assert opened.errors == []


@pytest.fixture(scope="module")
def long_call_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twenty minutes, a turn every 6 s and a barge-in every 18 s: too much to label whole."""
    path = tmp_path_factory.mktemp("long") / "call.html"
    report, caller, heard = synthetic_call(1200.0)
    write_html(path, report, caller, heard, RATE)
    return path


def test_a_long_call_folds_labels_instead_of_growing(context: Any, long_call_page: Path) -> None:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(long_call_page.as_uri())
    page.wait_for_function("!document.getElementById('tl-tools').hidden")
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    heights = page.evaluate(
        "Array.from(document.querySelectorAll('.lane-body.packed'), b => b.offsetHeight)"
    )
    assert max(heights) <= 900 / 2 + 20  # half the window at most, however long the call
    assert page.locator("#dense-note").is_visible()
    assert overlaps(page.evaluate(BOXES, "#tl .pk:not(.folded)")) == []
    # A folded label opens in full on a click, over the others.
    folded = page.locator("#lane-agent-text .folded").nth(40)
    text = folded.get_attribute("title") or ""
    folded.dispatch_event("click")  # folded ticks touch: a person clicks the top one
    opened = page.locator("#lane-agent-text .pk.open")
    assert opened.count() == 1 and opened.is_visible()
    assert text.endswith(opened.locator(".txt").inner_text())
    assert errors == []
    page.close()
