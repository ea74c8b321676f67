"""The cloud pipelines' example scenarios, run as shipped against the local fake of their
provider (the fake stands where the provider's base URL points)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from voicebridge.scenarios.run import run_scenario
from voicebridge.scenarios.spec import load_scenario

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "providers"))
from aws_fakes import aws_env
from openai_fakes import ChatReply, FakeOpenAI

__all__ = ["aws_env"]  # the AWS fixture (dummy credentials, fresh clients)

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


@pytest.mark.parametrize(
    ("heard", "failures"),
    [
        (["when do you open", "goodbye"], []),
        (
            ["what are your prices", "goodbye"],
            [
                "turn 1: reply does not contain 'when do you open'; "
                "heard 'You said what are your prices.'"
            ],
        ),
    ],
)
async def test_the_aws_scenario_against_the_fakes(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, heard: list[str], failures: list[str]
) -> None:
    """Real time (Transcribe answers over the network as the caller speaks)."""
    from aws_fakes import FakeAwsHttp, FakeTranscribe

    async with FakeTranscribe(lines=heard) as stt, FakeAwsHttp(ms_per_char=15) as http:
        monkeypatch.setenv("LEX_BOT_ID", "BOTID12345")
        monkeypatch.setenv("TRANSCRIBE_ENDPOINT", stt.url)
        monkeypatch.setenv("LEX_ENDPOINT", http.url)
        monkeypatch.setenv("POLLY_ENDPOINT", http.url)
        result = await run_scenario(load_scenario(CLOUD / "aws.yaml"))
        assert result.failures == failures
        assert len(stt.streams) == 1 and http.polly_requests() and http.lex_requests()


async def test_the_mixed_scenario_passes_against_a_fake_llm_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with FakeOpenAI(api_key="local-key") as fake:
        monkeypatch.setenv("LLM_BASE_URL", fake.base_url)
        monkeypatch.setenv("LLM_API_KEY", "local-key")
        fake.reply(
            ChatReply(text="We open at seven tomorrow."),
            ChatReply(tool_calls=[("hang_up", {"goodbye": "Thanks for calling, goodbye!"})]),
        )
        result = await run_scenario(load_scenario(CLOUD / "mixed.yaml"))
        assert result.failures == []
        body = fake.chat_requests[0].body
        assert body["model"] == "llama3.2" and "max_tokens" in body


def s2s_failures(answer: str) -> list[str]:
    """What the speech-to-speech scenarios must report when the model says ``answer`` first."""
    if "seven" in answer:
        return []
    return [f"turn 1: reply does not match /open|seven/; heard '{answer}'"]


@pytest.mark.parametrize("answer", ["We open at seven.", "Sorry, no idea."])
async def test_the_realtime_scenario_against_the_fake(
    monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """Real time (the model's audio comes over the network as the caller speaks)."""
    from openai_realtime_fake import FakeRealtime, Reply

    async with FakeRealtime(api_key="sk-fake") as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        fake.caller_says("when do you open tomorrow", "thanks bye")
        fake.reply(
            Reply(text=answer, ms_per_char=20),
            Reply(text="Goodbye!", tool_calls=[("hang_up", {})], ms_per_char=20),
        )
        result = await run_scenario(load_scenario(CLOUD / "realtime.yaml"))
        assert result.failures == s2s_failures(answer)


@pytest.mark.parametrize("answer", ["We open at seven.", "Sorry, no idea."])
async def test_the_gemini_scenario_against_the_fake(
    monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """Real time, over TLS: the process trusts the fake's own certificate."""
    pytest.importorskip("google.genai")
    from gemini_live_fake import FakeGemini, Reply

    async with FakeGemini(api_key="gm-fake") as fake:
        monkeypatch.setenv("GEMINI_API_KEY", "gm-fake")
        monkeypatch.setenv("GEMINI_BASE_URL", fake.base_url)
        monkeypatch.setenv("SSL_CERT_FILE", fake.cafile)
        fake.caller_says("when do you open tomorrow", "thanks bye")
        fake.reply(
            Reply(text=answer, ms_per_char=20),
            Reply(text="Goodbye!", tool_calls=[("hang_up", {})], ms_per_char=20),
        )
        result = await run_scenario(load_scenario(CLOUD / "gemini.yaml"))
        assert result.failures == s2s_failures(answer)
