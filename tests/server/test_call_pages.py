"""The call pages over HTTP: who may read them, what a finished call's page holds, where it is
read from (memory, or the events dir another worker wrote), and the bounds on what is kept.
The pages in a real browser, live call included, are in ``test_call_pages_browser.py``."""

from __future__ import annotations

import html
import json
from pathlib import Path

import httpx
import pytest

from voicebridge.call.events import AgentSaid, CallAnswered, CallerSaid, CallFinished
from voicebridge.clock import StreamClock
from voicebridge.config import load_pipeline_text
from voicebridge.server.call_pages.disk import read_events
from voicebridge.server.call_pages.report import report_from_events
from voicebridge.server.call_pages.store import CallStore
from voicebridge.server.run import running_service
from voicebridge.sim.analysis import build_report
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.simulate import CallerLine, simulate_call

from .call_pages_support import FMT, HOSTILE, KEY, lines, page_settings, place_call, spec

RIGHT = ("ops", KEY)


@pytest.fixture
def with_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBRIDGE_API_KEY", KEY)


async def test_without_a_key_there_are_no_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEBRIDGE_API_KEY", raising=False)
    async with (
        running_service(page_settings(None), spec()) as service,
        httpx.AsyncClient(base_url=service.http_base) as client,
    ):
        for path in ("/calls", "/calls/abc/page", "/calls/abc/events"):
            response = await client.get(path, auth=RIGHT)
            assert response.status_code == 404
            assert "VOICEBRIDGE_API_KEY" in response.text


@pytest.mark.usefixtures("with_key")
async def test_only_the_key_opens_the_pages_and_post_calls_still_wants_its_bearer() -> None:
    async with (
        running_service(page_settings(None), spec()) as service,
        httpx.AsyncClient(base_url=service.http_base) as client,
    ):
        bare = await client.get("/calls")
        assert bare.status_code == 401
        assert bare.headers["www-authenticate"].startswith("Basic ")  # the browser asks
        for auth in (("ops", "wrong"), ("ops", ""), (KEY, "")):
            assert (await client.get("/calls", auth=auth)).status_code == 401
        wrong_bearer = {"Authorization": "Bearer wrong"}
        assert (await client.get("/calls", headers=wrong_bearer)).status_code == 401
        page = await client.get("/calls", auth=RIGHT)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        assert 'id="no-calls"' in page.text
        bearer = await client.get("/calls", headers={"Authorization": f"Bearer {KEY}"})
        assert bearer.status_code == 200
        # POST /calls (placing calls costs money) is untouched: Basic does not open it.
        placed = await client.post("/calls", json={"to": "+15551234567"}, auth=RIGHT)
        assert placed.status_code == 401 and "Bearer" in placed.json()["error"]
        # Keys from URLs are names, never paths.
        for bad in ("..", ".hidden", "a%2F..%2F..%2Fetc%2Fpasswd"):
            assert (await client.get(f"/calls/{bad}/page", auth=RIGHT)).status_code == 404


@pytest.mark.usefixtures("with_key")
async def test_switched_off_the_pages_are_gone_even_with_the_key() -> None:
    async with (
        running_service(page_settings(None, enabled=False), spec()) as service,
        httpx.AsyncClient(base_url=service.http_base) as client,
    ):
        response = await client.get("/calls", auth=RIGHT)
        assert response.status_code == 404 and "call_pages.enabled" in response.text


@pytest.mark.usefixtures("with_key")
async def test_a_finished_call_has_its_row_its_page_and_its_events(tmp_path: Path) -> None:
    watch = SessionWatch()
    settings = page_settings(tmp_path)
    async with running_service(
        settings, spec(), clock_factory=StreamClock, on_session=watch
    ) as service:
        record = await place_call(service.http_base, watch, lines()[:2])
        async with httpx.AsyncClient(base_url=service.http_base, auth=RIGHT) as client:
            listing = (await client.get("/calls")).text
            (entry,) = service.app.state.call_store.entries()
            assert entry.events is None  # on disk now: memory lets go of them
            assert f'href="calls/{entry.key}/page"' in listing and record.call_id in listing
            assert 'data-live="false"' in listing and ">socket_closed<" in listing
            page = (await client.get(f"/calls/{entry.key}/page")).text
            events = (await client.get(f"/calls/{entry.key}/events", params={"after": 2})).json()
            wav = await client.get(f"/calls/{entry.key}/recording.wav")
    assert page.count('<audio class="track"') == 3  # the call, the caller, the agent
    assert "recording.wav" in page and 'id="live"' not in page
    assert "<script>alert" not in page and html.escape(HOSTILE) in page
    assert "Seven to six." in page
    logged = [json.loads(line) for line in next((tmp_path / "events").iterdir()).open()][1:]
    assert events["live"] is False and events["events"] == logged[2:]
    assert events["next"] == len(logged)
    assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
    assert wav.content == next((tmp_path / "recordings").iterdir()).read_bytes()


@pytest.mark.usefixtures("with_key")
async def test_another_worker_reads_finished_calls_from_the_events_dir(tmp_path: Path) -> None:
    settings = page_settings(tmp_path)
    watch = SessionWatch()
    async with running_service(
        settings, spec(), clock_factory=StreamClock, on_session=watch
    ) as service:
        await place_call(service.http_base, watch, lines()[:1])
        key = service.app.state.call_store.entries()[0].key
    async with running_service(settings, spec()) as other:  # a fresh process: nothing in memory
        assert other.app.state.call_store.entries() == []
        async with httpx.AsyncClient(base_url=other.http_base, auth=RIGHT) as client:
            listing = (await client.get("/calls")).text
            page = (await client.get(f"/calls/{key}/page")).text
    assert f'data-key="{key}"' in listing and "events.dir" in listing
    assert page.count('<audio class="track"') == 3 and html.escape(HOSTILE) in page


def answered(call_id: str) -> CallAnswered:
    return CallAnswered(0.0, call_id, "s-1", "acc", "audio/x-l16", 8000)


def test_the_store_keeps_a_ring_of_calls_and_a_bounded_timeline_each() -> None:
    store = CallStore(keep_calls=2, max_events=100)
    watchers = [store.watcher("p") for _ in range(3)]
    for i, watcher in enumerate(watchers):
        watcher.on_event(answered(f"c{i}"))
    first = watchers[0].entry
    assert first is not None
    first.finish(None, None)
    watchers[0].on_event(CallFinished(1.0, "stop"))
    # Three calls for two places: the finished one left, the live ones stay.
    assert [e.call_id for e in store.entries()] == ["c2", "c1"]
    live = watchers[2]
    for n in range(150):
        live.on_event(CallerSaid(float(n), f"line {n}"))
    live.on_event(CallFinished(200.0, "stop"))
    assert live.entry is not None and live.entry.events is not None
    assert len(live.entry.events) == 101  # 100, then the call's end still
    assert live.entry.dropped == 51 and live.entry.count == 152  # its start, 150 lines, end
    assert live.entry.events[-1]["kind"] == "call_ended"
    assert live.entry.summary.caller_turns == 150  # the figures count every event


def test_the_report_comes_from_the_calls_own_events() -> None:
    events = [
        answered("c").as_dict(),
        AgentSaid(0.1, 1, "Hello.", True).as_dict(),
        {"t": 1.0, "kind": "speech_started", "at": 1.0},
        {"t": 2.0, "kind": "speech_ended", "at": 2.0},
        CallerSaid(2.3, "<b>hi</b>").as_dict(),
        AgentSaid(2.5, 2, "Hi there.", True).as_dict(),
        {"t": 2.5, "kind": "checkpoint", "name": "turn-2/piece-1", "turn": 2, "text": "Hi there."},
        {"t": 3.2, "kind": "played", "name": "turn-2/piece-1", "turn": 2, "text": "Hi there."},
        {"t": 3.2, "kind": "turn_played", "turn": 2, "latency_s": 0.7, "stt_s": 0.3},
        CallFinished(4.0, "socket_closed").as_dict(),
    ]
    report = report_from_events(events, pipeline="p")
    greeting, reply = report.turns
    assert greeting.agent_turns == [1] and greeting.caller_speech_start_s is None
    assert reply.transcript == "<b>hi</b>" and reply.agent_turns == [2]
    assert reply.latency_s == 0.7 and reply.first_audio_played_s == 2.7
    assert reply.heard_text == "Hi there."
    (checkpoint,) = report.checkpoints
    assert checkpoint.acked_s == 3.2 and not checkpoint.cleared
    assert report.duration_s == 4.0 and report.closed_by == "socket_closed"
    assert [h["role"] for h in report.history] == ["agent", "caller", "agent"]


LONG = (
    "We are open from seven in the morning until six in the evening on every weekday and on "
    "Saturdays, and from eight until two on Sundays"
)
BARGING = f"""
name: barging
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


async def test_the_service_side_report_agrees_with_the_simulators_wire_side(
    tmp_path: Path,
) -> None:
    """The same call seen from the wire (the simulator's report) and from its own event log
    (the call page's): the same turns, transcripts, barge-ins and cleared checkpoints."""
    call = await simulate_call(
        load_pipeline_text(BARGING),
        FMT,
        [CallerLine(None, pcm) for pcm in lines()],
        settings=page_settings(tmp_path),
        interrupt_after_s=1.0,
    )
    wire = build_report(call)
    (log,) = (tmp_path / "events").iterdir()
    header, events = read_events(log, 1 << 20)
    page = report_from_events(events, pipeline=header["pipeline"])
    assert len(page.barge_ins) == len(wire.barge_ins) >= 1
    assert [t.agent_turns for t in page.turns] == [t.agent_turns for t in wire.turns]
    assert [t.transcript for t in page.turns] == [t.transcript for t in wire.turns]
    assert [t.interrupted for t in page.turns] == [t.interrupted for t in wire.turns]
    cleared = sorted(c.name for c in page.checkpoints if c.cleared)
    assert cleared == sorted(c.name for c in wire.checkpoints if c.cleared) != []
    kinds = {m.kind for m in page.markers}
    assert {"barge_in", "clear", "played", "transcript", "agent_text", "close"} <= kinds
    answered = [t for t in page.turns if t.latency_s is not None]
    assert [t.agent_turns for t in answered] == [
        t.agent_turns for t in wire.turns if t.latency_s is not None and not t.interrupted
    ]
