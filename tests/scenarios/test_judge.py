"""A model judging the call's transcript, against the local fake of an OpenAI-compatible API."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from voicebridge.scenarios.judge import parse_verdict
from voicebridge.scenarios.run import run_scenario
from voicebridge.scenarios.spec import load_scenario

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "providers"))
from openai_fakes import ChatReply, FakeOpenAI

from .test_scenarios import PIPELINE


def scenario(tmp_path: Path, base_url: str) -> Path:
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.format(lines="[hi]", think=0.0))
    path = tmp_path / "judged.yaml"
    path.write_text(
        "pipeline: pipeline.yaml\ngap_ms: 300\nturns:\n  - sound_ms: 500\n"
        "expect:\n  judge:\n"
        f"    base_url: {base_url}\n    model: judge-1\n    api_key_env: JUDGE_KEY\n"
        "    criteria: [The agent greets the caller, The agent answers politely]\n"
    )
    return path


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setenv("JUDGE_KEY", "sk-judge")
    async with FakeOpenAI(api_key="sk-judge") as server:
        yield server


async def test_a_passing_verdict_passes_with_its_reasons(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.reply(ChatReply(text='```json\n{"pass": true, "reasons": "Greeted and polite."}\n```'))
    result = await run_scenario(load_scenario(scenario(tmp_path, fake.base_url)))
    assert result.failures == []
    assert result.verdict == "judge: pass: Greeted and polite."
    (request,) = fake.chat_requests
    assert request.body["model"] == "judge-1" and request.auth == "Bearer sk-judge"
    asked = request.body["messages"][1]["content"]
    assert "- The agent greets the caller\n- The agent answers politely" in asked
    assert asked.endswith("agent: Hello there.\ncaller: hi\nagent: Fine, thanks.")


async def test_a_failing_verdict_fails_the_scenario(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.reply(ChatReply(text='{"pass": false, "reasons": "It never said its name."}'))
    result = await run_scenario(load_scenario(scenario(tmp_path, fake.base_url)))
    assert result.failures == ["judge: fail: It never said its name."]


async def test_no_verdict_is_a_failure_not_a_crash(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.reply(ChatReply(text="I think it went well."), ChatReply(status=500))
    path = scenario(tmp_path, fake.base_url)
    result = await run_scenario(load_scenario(path))
    assert result.failures == [
        "judge: no verdict (ValueError: the judge's answer has no verdict: 'I think it went well.')"
    ]
    result = await run_scenario(load_scenario(path))
    assert len(result.failures) == 1
    assert result.failures[0].startswith("judge: no verdict (HTTPStatusError: 500")


def test_verdicts_are_read_from_prose() -> None:
    assert parse_verdict('Verdict: {"pass": false, "reasons": " a\\n b "} ok').reasons == "a b"
    with pytest.raises(ValueError):
        parse_verdict('{"pass": "yes"}')
