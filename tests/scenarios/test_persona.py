"""A caller played by a model, against the local fake of an OpenAI-compatible API: it hears each
reply and says its next line in the offline voice, until it hangs up or runs out of turns."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from voicebridge.scenarios.persona import caller_line
from voicebridge.scenarios.run import run_scenario
from voicebridge.scenarios.spec import load_scenario

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "providers"))
from openai_fakes import ChatReply, FakeOpenAI

from .test_scenarios import PIPELINE

pytest.importorskip("voicebridge.stages.tts.hibari")


def scenario(tmp_path: Path, base_url: str, max_turns: int = 5, expect: str = "{}") -> Path:
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.format(lines="[one, two, three]", think=0))
    path = tmp_path / "persona.yaml"
    path.write_text(
        "pipeline: pipeline.yaml\ngap_ms: 300\npersona:\n"
        "  prompt: You are Sam, asking when the bakery opens.\n"
        f"  base_url: {base_url}\n  model: caller-1\n  api_key_env: null\n"
        f"  max_turns: {max_turns}\nexpect: {expect}\n"
    )
    return path


@pytest.fixture
async def fake() -> object:
    async with FakeOpenAI(api_key=None) as server:
        yield server


async def test_the_persona_talks_until_it_hangs_up(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.reply(
        ChatReply(text="Hi, when do you open?"),
        ChatReply(text="Great, thanks."),
        ChatReply(text="[HANG UP]"),
    )
    expect = "{heard: ['Hello there.', 'Fine, thanks.', 'Fine, thanks.'], ended_by: caller}"
    result = await run_scenario(load_scenario(scenario(tmp_path, fake.base_url, expect=expect)))
    assert result.failures == []
    assert result.report is not None
    assert [t.caller_said for t in result.report.turns if t.caller_said] == [
        "Hi, when do you open?",
        "Great, thanks.",
    ]
    first, second, third = (r.body["messages"] for r in fake.chat_requests)
    assert first[0]["content"].startswith("You are Sam, asking when the bakery opens.")
    assert first[1:] == [{"role": "user", "content": "Hello there."}]
    # The agent's lines are the model's "user"; its own (as transcribed) its "assistant".
    assert second[1:] == [
        {"role": "user", "content": "Hello there."},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "Fine, thanks."},
    ]
    assert len(third) == 6


async def test_max_turns_ends_the_persona(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.reply(ChatReply(text="Hello?"), ChatReply(text="Still there?"))
    result = await run_scenario(load_scenario(scenario(tmp_path, fake.base_url, max_turns=1)))
    assert result.failures == [] and len(fake.chat_requests) == 1


async def test_an_endpoint_error_fails_the_scenario(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.reply(ChatReply(status=503))
    result = await run_scenario(load_scenario(scenario(tmp_path, fake.base_url)))
    assert len(result.failures) == 1
    assert result.failures[0].startswith("persona: no next line (HTTPStatusError: 503")


def test_the_model_answer_becomes_one_spoken_line() -> None:
    assert caller_line(' "Yes, please."  ') == "Yes, please."
    assert caller_line("[HANG UP]") is None
    assert caller_line("Bye now. [HANG UP]") == "Bye now."
    assert caller_line("") is None
