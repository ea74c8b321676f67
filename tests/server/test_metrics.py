"""Prometheus metrics of the real service: what calls did shows up in /metrics, exactly."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from voicebridge.clock import StreamClock
from voicebridge.observe.metrics import (
    CONTENT_TYPE,
    OUTCOMES,
    LoopLagMonitor,
    ServiceMetrics,
    outcome_of,
)
from voicebridge.server.app import create_app
from voicebridge.server.run import running_service
from voicebridge.sim.signals import utterances

from .conftest import FMT, Sessions, echo_spec, fast_caller, scripted_spec, settings

EXPECTED = {
    "voicebridge_active_calls",
    "voicebridge_calls",
    "voicebridge_turn_latency_seconds",
    "voicebridge_bargein_reaction_seconds",
    "voicebridge_stage_first_output_seconds",
    "voicebridge_provider_errors",
    "voicebridge_dropped_frames",
    "voicebridge_event_loop_lag_seconds",
    "voicebridge_resume_events",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def scrape(base: str) -> tuple[httpx.Response, dict[Any, float]]:
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.get("/metrics")
    return response, samples(response.text)


async def test_metrics_page_lists_every_metric_with_prometheus_content_type() -> None:
    async with running_service(settings(), echo_spec()) as service:
        response, values = await scrape(service.http_base)
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE  # prometheus_client's, for its format
    assert CONTENT_TYPE.startswith("text/plain; version=")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert families >= EXPECTED
    assert all(name.startswith("voicebridge_") for name in families)
    assert values[("voicebridge_active_calls", ())] == 0
    for outcome in OUTCOMES:  # every outcome is there from the start, at zero
        assert values[("voicebridge_calls_total", (("outcome", outcome),))] == 0


def test_each_app_has_its_own_registry() -> None:
    spec = echo_spec()
    one, two = create_app(settings(), spec), create_app(settings(), spec)
    one.state.metrics.calls.labels("transfer").inc()
    assert one.state.metrics.value("voicebridge_calls_total", {"outcome": "transfer"}) == 1
    assert two.state.metrics.value("voicebridge_calls_total", {"outcome": "transfer"}) == 0


async def test_a_call_with_every_stage_reports_turns_stages_and_provider_errors() -> None:
    spec = scripted_spec(["hello there", "fail now"])
    sessions = Sessions()
    async with running_service(
        settings(), spec, clock_factory=StreamClock, on_session=sessions, record_events=True
    ) as service:
        audio = utterances(
            [("silence", 0.3), ("speech", 0.8), ("silence", 3.0), ("speech", 0.6),
             ("silence", 3.0)],
            8000,
        )  # fmt: skip
        caller = fast_caller(service.ws_url, sessions)
        active_mid_call: list[float | None] = []

        async def probe(c: Any) -> None:
            await sessions.lockstep(c)
            if c.frames_sent == 10:
                active_mid_call.append(service.app.state.metrics.value("voicebridge_active_calls"))

        caller._probe = probe
        record = await caller.run(audio, tail_s=1.0)
        session = sessions.all[0]
        await session.ended.wait()
        await asyncio.sleep(0)  # the socket handler removes the call after the session ended
        _, values = await scrape(service.http_base)

    assert record.protocol_errors == []
    assert active_mid_call == [1.0]
    assert values[("voicebridge_active_calls", ())] == 0
    assert values[("voicebridge_calls_total", (("outcome", "caller_hangup"),))] == 1
    turns = [
        e
        for e in (session.timeline.dicts() if session.timeline else [])
        if e["kind"] == "turn_played"
    ]
    # The reply to "hello there", then the fallback line after the provider failed.
    assert len(turns) == 2
    latencies = [t["latency_s"] for t in turns if t["latency_s"] is not None]
    assert values[("voicebridge_turn_latency_seconds_count", ())] == len(latencies) >= 1
    assert values[("voicebridge_turn_latency_seconds_sum", ())] == pytest.approx(sum(latencies))
    stages = {
        "stt": ("voicebridge.testing:ScriptedStt", "stt_s"),
        "dialogue": ("voicebridge.testing:FailingDialogue", "dialogue_s"),
        "tts": ("voicebridge.testing:ToneSpeaker", "tts_s"),
    }
    for role, (stage, field) in stages.items():
        seen = [t[field] for t in turns if t[field] is not None]
        labels = (("role", role), ("stage", stage))
        assert values[("voicebridge_stage_first_output_seconds_count", labels)] == len(seen) >= 1
        total = values[("voicebridge_stage_first_output_seconds_sum", labels)]
        assert total == pytest.approx(sum(seen)), role
    errors = {k: v for k, v in values.items() if k[0] == "voicebridge_provider_errors_total"}
    assert errors == {
        (
            "voicebridge_provider_errors_total",
            (("kind", "unavailable"), ("stage", "voicebridge.testing:FailingDialogue")),
        ): 1
    }


async def test_barge_in_reaction_is_speech_onset_to_clear() -> None:
    sessions = Sessions()
    async with running_service(
        settings(), echo_spec(), clock_factory=StreamClock, on_session=sessions, record_events=True
    ) as service:
        # The echo of the first utterance starts ~0.6 s after it ends; the caller talks over it.
        audio = utterances(
            [("silence", 0.3), ("speech", 1.5), ("silence", 1.0), ("speech", 0.8),
             ("silence", 3.0)],
            8000,
        )  # fmt: skip
        record = await fast_caller(service.ws_url, sessions).run(audio, tail_s=1.0)
        metrics = service.app.state.metrics
    (clear,) = record.sent_by_agent("clearAudio")
    events = sessions.all[0].timeline.dicts()
    onset = [e["at"] for e in events if e["kind"] == "speech_started"][1]
    (barge,) = [e for e in events if e["kind"] == "barge_in"]
    assert metrics.value("voicebridge_bargein_reaction_seconds_count") == 1
    reaction = metrics.value("voicebridge_bargein_reaction_seconds_sum")
    assert reaction == pytest.approx(barge["t"] - onset, abs=1e-6)
    assert 0.2 <= reaction <= clear.t - onset + 0.021  # the 200 ms guard, then the clear


async def test_refused_calls_are_counted() -> None:
    async with running_service(settings(limits={"max_calls": 1}), echo_spec()) as service:
        async with connect(service.ws_url) as first:
            await first.send(FMT_START)
            async with connect(service.ws_url) as second:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(second.recv(), 5)
            assert second.close_code == 1013
        _, values = await scrape(service.http_base)
    assert values[("voicebridge_calls_total", (("outcome", "refused"),))] == 1


FMT_START = (
    '{"event": "start", "start": {"callId": "c1", "streamId": "s1", "accountId": "MA1",'
    f' "mediaFormat": {{"encoding": "{FMT.encoding}", "sampleRate": {FMT.sample_rate}}}}}}}'
)


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        ("socket_closed", "caller_hangup"),
        ("stop_event", "caller_hangup"),
        ("hangup:dialogue", "agent_hangup"),
        ("hangup:idle", "agent_hangup"),
        ("transferred", "transfer"),
        ("max_call_duration", "timeout"),
        ("too_many_bad_messages", "protocol_error"),
        ("stage_failed", "error"),
        ("draining", "draining"),
        ("something new", "other"),
        (None, "other"),
    ],
)
def test_end_reasons_map_to_a_fixed_set_of_outcomes(reason: str | None, outcome: str) -> None:
    assert outcome_of(reason) == outcome
    assert outcome in OUTCOMES


async def test_event_loop_lag_measures_a_blocked_loop() -> None:
    metrics = ServiceMetrics()
    monitor = LoopLagMonitor(metrics, interval_s=0.001)
    monitor.start()
    try:
        await monitor.sampled.wait()  # the timer is armed and ticking
        monitor.sampled.clear()  # (it has re-armed its timer: nothing yields between here and the
        time.sleep(0.05)  # a blocking call on the event loop: what the metric exists to expose
        await monitor.sampled.wait()  # next sample)
    finally:
        await monitor.stop()
    assert monitor.worst_s >= 0.05 - 0.001
    assert metrics.value("voicebridge_event_loop_lag_seconds_count") == monitor.samples
    assert metrics.value("voicebridge_event_loop_lag_seconds_bucket", {"le": "+Inf"}) >= 2


async def test_resume_counters_are_read_from_the_registry_at_scrape_time() -> None:
    async with running_service(settings(), echo_spec()) as service:
        stats = service.app.state.resumes.stats
        stats.suspended, stats.resumed, stats.finalised = 3, 2, 1
        _, values = await scrape(service.http_base)
    assert values[("voicebridge_resume_events_total", (("event", "suspended"),))] == 3
    assert values[("voicebridge_resume_events_total", (("event", "resumed"),))] == 2
    assert values[("voicebridge_resume_events_total", (("event", "finalised"),))] == 1
