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


def google_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    for name, value in {
        "GOOGLE_CLOUD_PROJECT": "proj-1",
        "DIALOGFLOW_AGENT_ID": "agent-1",
        "GOOGLE_STT_ENDPOINT": endpoint,
        "DIALOGFLOW_ENDPOINT": endpoint,
        "GOOGLE_TTS_ENDPOINT": endpoint,
        "GOOGLE_INSECURE": "true",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("heard", "failures"),
    [
        (["what are your hours", "ok bye"], []),
        (
            ["what are your prices", "ok bye"],
            [
                "turn 1: reply does not contain 'what are your hours'; "
                "heard 'You said what are your prices. Anything else?'"
            ],
        ),
    ],
)
async def test_the_google_scenario_against_the_fake(
    monkeypatch: pytest.MonkeyPatch, heard: list[str], failures: list[str]
) -> None:
    """Real time (the recogniser answers over the network as the caller speaks)."""
    pytest.importorskip("grpc")
    from google_fakes import FakeGoogle

    async with FakeGoogle() as fake:
        google_env(monkeypatch, fake.endpoint)
        fake.stt_lines = heard
        result = await run_scenario(load_scenario(CLOUD / "google.yaml"))
        assert result.failures == failures
