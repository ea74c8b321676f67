"""A campaign of 50 simulated numbers end to end on one machine: the real service, the campaign
over HTTP, and a simulated carrier that plays each call (people, answering machines, no answer,
busy) into the service."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from voicebridge.clock import MonotonicClock, StreamClock
from voicebridge.config import load_pipeline_text
from voicebridge.server.run import running_service
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.outbound import CalleeKind, SimulatedCarrier
from voicebridge.telephony.campaign import (
    Campaign,
    CampaignOptions,
    Lead,
    ServiceCalls,
    StateFile,
)
from voicebridge.telephony.plivo_rest import PlivoCredentials, PlivoRest

from ..server.conftest import settings

KEY = "campaign-key-0123456789"
PIPELINE = """
name: reminders
outbound:
  on_machine: voicemail
  voicemail: "Hi {name}, this is the clinic. Please call us back."
stages:
  - type: decode
  - type: vad
    params: {forward_audio: false}
  - type: voicebridge.testing:ScriptedStt
    params: {lines: []}
  - type: rules
    params: {rules: []}
  - type: voicebridge.testing:ToneSpeaker
    params: {ms_per_char: 5}
  - type: encode
"""
OUTCOME = {"person": "completed", "machine": "completed", "busy": "busy", "no_answer": "no-answer"}
KINDS: tuple[CalleeKind, ...] = ("person", "machine", "no_answer", "busy", "person")


async def test_fifty_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("VOICEBRIDGE_API_KEY", KEY)
    monkeypatch.setenv("VOICEBRIDGE_FROM_NUMBER", "+14155550100")
    monkeypatch.delenv("PLIVO_AUTH_TOKEN", raising=False)
    leads = [Lead(f"+1555010{i:04d}", {"name": f"Lead{i}"}, i + 2) for i in range(50)]
    kind_of = {lead.number[1:]: KINDS[i % len(KINDS)] for i, lead in enumerate(leads)}
    sessions = SessionWatch()
    carrier = SimulatedCarrier("MASIM", "tok", callee=kind_of.__getitem__, sessions=sessions)
    async with carrier:
        rest = lambda: PlivoRest(PlivoCredentials("MASIM", "tok"), base_url=carrier.base_url)  # noqa: E731
        async with running_service(
            settings(events={"dir": str(tmp_path / "events")}),
            load_pipeline_text(PIPELINE),
            rest_factory=rest,
            on_session=sessions,
            clock_factory=StreamClock,
        ) as service:
            api = ServiceCalls(service.http_base, KEY)
            options = CampaignOptions(
                rate_per_s=20.0, concurrency=8, retries=1, retry_delay_s=0.1, poll_s=0.05
            )
            campaign = Campaign(
                api, options, MonotonicClock(), StateFile(tmp_path / "s"), tmp_path / "r"
            )
            try:
                results = await campaign.run(leads)
            finally:
                await api.aclose()
            await carrier.settle()
            handlings = [service.app.state.machine_handling_of(s) for s in sessions.all]

    # Every number called at most once per attempt: busy and no-answer twice, the rest once.
    placed = [p.number for p in carrier.played]
    for number, kind in kind_of.items():
        expected = 2 if kind in ("busy", "no_answer") else 1
        assert placed.count(number) == expected, (number, kind)
    # The rate held, on the campaign's clock.
    times = sorted(campaign.placed_at)
    assert all(b - a >= 1 / 20.0 - 1e-6 for a, b in itertools.pairwise(times))
    # Voicemail only to machines, and only after the beep.
    for handling in handlings:
        assert handling is not None
        if handling.result == "machine":
            assert handling.voicemail_spoken and handling.timing.reason == "beep"
        else:
            assert not handling.voicemail_spoken
    assert sum(h.result == "machine" for h in handlings) == 10
    # The results: one line per number, complete.
    lines = [json.loads(line) for line in (tmp_path / "r").read_text().splitlines()]
    assert len(lines) == 50 == len(results)
    by_number = {line["number"][1:]: line for line in lines}
    for number, kind in kind_of.items():
        line = by_number[number]
        assert line["request_uuid"] and line["attempts"] == (
            2 if kind in ("busy", "no_answer") else 1
        )
        expected = {
            "person": "completed",
            "machine": "completed",
            "busy": "busy",
            "no_answer": "no-answer",
        }
        assert line["outcome"] == expected[kind]
        assert line["answered_by"] == {"person": "human", "machine": "machine"}.get(kind)
        assert line["voicemail"] is (kind == "machine")
        # Duration and hang-up cause from Plivo's callback; where the call's report is.
        assert isinstance(line["duration_s"], float) and line["hangup_cause"]
        if kind in ("person", "machine"):
            events = Path(line["report"]["events"])
            assert events.parent == tmp_path / "events"
            assert json.loads(events.read_text().splitlines()[0])["call_id"] == line["call_uuid"]
            assert line["report"]["page"].startswith("/calls/")
        else:
            assert line["report"] == {}
