"""Campaign scheduling on a virtual clock: the rate limit, the calls in flight, retries of busy
and unanswered numbers, the results file, and a resumed run that calls no one twice. The calls
API here is an in-process stand-in with scripted outcomes; the HTTP client is tested against the
real service below."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from voicebridge.clock import VirtualClock
from voicebridge.config import load_pipeline_text
from voicebridge.server.run import running_service
from voicebridge.telephony.campaign import (
    Campaign,
    CampaignError,
    CampaignOptions,
    Lead,
    ServiceCalls,
    StateFile,
    read_leads,
)
from voicebridge.telephony.plivo_rest import PlivoCredentials, PlivoRest
from voicebridge.testing.plivo_rest_fake import FakePlivoRest

from ..server.conftest import settings


class ScriptedCalls:
    """Each number's attempts end with the scripted statuses, each after ``talk_s`` of clock."""

    def __init__(self, clock: VirtualClock, script: dict[str, list[str]], talk_s: float) -> None:
        self.clock = clock
        self.script = {k: list(v) for k, v in script.items()}
        self.talk_s = talk_s
        self.placed: list[tuple[float, str]] = []
        self.ends: dict[str, tuple[float, str]] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    async def place(self, lead: Lead) -> str:
        request = f"req-{len(self.placed)}"
        self.placed.append((self.clock.now(), lead.number))
        status = self.script[lead.number].pop(0)
        self.ends[request] = (self.clock.now() + self.talk_s, status)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return request

    async def outcome(self, request_uuid: str) -> Mapping[str, Any] | None:
        end, status = self.ends[request_uuid]
        if self.clock.now() < end:
            return {"status": "queued"}
        if status != "done":
            self.in_flight -= 1
            self.ends[request_uuid] = (end, "done")
            answered = "machine" if status == "machine" else "human"
            return {
                "status": "completed" if status in ("human", "machine") else status,
                "answered_by": answered if status in ("human", "machine") else None,
                "duration_s": self.talk_s,
                "hangup_cause": "NORMAL_CLEARING",
            }
        return {"status": "completed"}


async def drive(clock: VirtualClock, task: asyncio.Task[Any], step: float = 0.5) -> Any:
    while not task.done():
        await clock.advance(step)
    return task.result()


def leads(n: int) -> list[Lead]:
    return [Lead(f"+1555000{i:04d}", {"name": f"n{i}"}, i + 2) for i in range(n)]


async def test_rate_concurrency_retries_and_results(tmp_path: Path):
    clock = VirtualClock()
    people = leads(12)
    script = {lead.number: ["human"] for lead in people}
    script[people[1].number] = ["busy", "no-answer", "human"]
    script[people[2].number] = ["busy", "busy", "busy"]
    script[people[3].number] = ["machine"]
    api = ScriptedCalls(clock, script, talk_s=8.0)
    options = CampaignOptions(rate_per_s=1.0, concurrency=3, retries=2, retry_delay_s=60, poll_s=1)
    results_path = tmp_path / "results.jsonl"
    campaign = Campaign(api, options, clock, StateFile(tmp_path / "state.jsonl"), results_path)
    results = await drive(clock, asyncio.ensure_future(campaign.run(people)))

    times = sorted(t for t, _ in api.placed)
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(times))  # rate held
    assert api.max_in_flight <= 3
    per_number = {n: sum(1 for _, m in api.placed if m == n) for n in script}
    assert per_number[people[1].number] == 3 and per_number[people[2].number] == 3
    assert all(per_number[p.number] == 1 for p in people if p not in people[1:3])
    lines = [json.loads(line) for line in results_path.read_text().splitlines()]
    assert len(lines) == 12 == len(results)
    by_number = {line["number"]: line for line in lines}
    assert by_number[people[1].number]["outcome"] == "completed"
    assert by_number[people[2].number]["outcome"] == "busy"
    assert by_number[people[2].number]["attempts"] == 3
    assert by_number[people[3].number]["answered_by"] == "machine"


async def test_a_resumed_run_calls_no_one_twice(tmp_path: Path):
    clock = VirtualClock()
    people = leads(6)
    api = ScriptedCalls(clock, {p.number: ["human", "human"] for p in people}, talk_s=20.0)
    state = StateFile(tmp_path / "state.jsonl")
    options = CampaignOptions(rate_per_s=1.0, concurrency=2, poll_s=1)
    first = asyncio.ensure_future(Campaign(api, options, clock, state, tmp_path / "r").run(people))
    for _ in range(50):  # 25 s: two calls done, two in the air, two not placed
        await clock.advance(0.5)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    placed_before = [n for _, n in api.placed]
    assert 2 <= len(placed_before) < 6

    second = Campaign(api, options, clock, state, tmp_path / "r")
    await drive(clock, asyncio.ensure_future(second.run(people)))
    numbers = [n for _, n in api.placed]
    assert sorted(numbers) == sorted(p.number for p in people)  # each exactly once
    results = [json.loads(line) for line in (tmp_path / "r").read_text().splitlines()]
    assert sorted(r["number"] for r in results) == sorted(p.number for p in people)


def test_read_leads(tmp_path: Path):
    path = tmp_path / "leads.csv"
    path.write_text(
        "number,name,time\n+1 555 000 0001,Ana,3 pm\n+15550000001,Dup,\n+15550000002,Bo,\n"
    )
    read = read_leads(path)
    assert [(lead.number, lead.vars) for lead in read] == [
        ("+15550000001", {"name": "Ana", "time": "3 pm"}),
        ("+15550000002", {"name": "Bo"}),
    ]
    path.write_text("number,name\n5550000001,Ana\n")
    with pytest.raises(CampaignError, match=r":2: .*E\.164"):
        read_leads(path)
    path.write_text("name\nAna\n")
    with pytest.raises(CampaignError, match="no number column"):
        read_leads(path)


async def test_service_calls_over_http(monkeypatch):
    monkeypatch.setenv("VOICEBRIDGE_API_KEY", "k" * 20)
    monkeypatch.setenv("VOICEBRIDGE_FROM_NUMBER", "+14155550100")
    monkeypatch.delenv("PLIVO_AUTH_TOKEN", raising=False)
    spec = load_pipeline_text(
        "name: p\nstages:\n  - type: decode\n  - type: vad\n  - type: echo\n  - type: encode\n"
    )
    async with FakePlivoRest("MAFAKE", "tok") as plivo:
        rest = lambda: PlivoRest(PlivoCredentials("MAFAKE", "tok"), base_url=plivo.base_url)  # noqa: E731
        async with running_service(
            settings(public_url="https://a.example"), spec, rest_factory=rest
        ) as service:
            api = ServiceCalls(service.http_base, "k" * 20)
            request_uuid = await api.place(Lead("+15551234567", {"name": "Ana"}, 2))
            assert (await api.outcome(request_uuid))["status"] == "queued"
            async with httpx.AsyncClient() as client:
                await client.post(
                    f"{service.http_base}/hangup",
                    data={"RequestUUID": request_uuid, "CallUUID": "c", "CallStatus": "busy"},
                )
            assert (await api.outcome(request_uuid))["status"] == "busy"
            assert await api.outcome("unknown") is None
            await api.aclose()
    assert plivo.created_calls[0].fields["to"] == "15551234567"
