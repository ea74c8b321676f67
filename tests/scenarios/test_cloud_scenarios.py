"""The cloud pipelines' example scenarios, run as shipped against the local fake of their
provider (the fake stands where the provider's base URL points)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from voicebridge.scenarios.run import run_scenario
from voicebridge.scenarios.spec import load_scenario

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "providers"))
from openai_fakes import ChatReply, FakeOpenAI

CLOUD = Path(__file__).resolve().parents[2] / "examples/scenarios/cloud"

pytest.importorskip("voicebridge.stages.stt.whisper")


async def test_the_openai_scenario_passes_against_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeOpenAI(api_key="sk-fake") as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        fake.reply(
            ChatReply(text="We open at seven tomorrow."),
            ChatReply(tool_calls=[("hang_up", {"goodbye": "Thanks for calling, goodbye!"})]),
        )
        result = await run_scenario(load_scenario(CLOUD / "openai.yaml"))
        assert result.failures == []
        asked = [
            m["content"] for m in fake.chat_requests[0].body["messages"] if m["role"] == "user"
        ]
        assert len(asked) == 1 and "open" in asked[0].lower()


async def test_a_changed_answer_fails_the_openai_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeOpenAI(api_key="sk-fake") as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        fake.reply(ChatReply(text="Sorry, I cannot help with that."), ChatReply(text="Bye."))
        result = await run_scenario(load_scenario(CLOUD / "openai.yaml"))
        assert result.failures[0].startswith("turn 1: reply does not match /open|seven/")
        assert "actions differ: wanted ['hangup'], got []" in result.failures
