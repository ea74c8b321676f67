"""A whole simulated call through the AWS pipeline (transcribe -> lex -> polly) against the fakes:
the session, VAD and codecs are real, and so are the SDK, the signatures and the wire protocols."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_fakes as fakes
import pytest

from voicebridge.config import ConfigError, load_pipeline, load_pipeline_text
from voicebridge.sim.signals import speech_like
from voicebridge.testing.harness import CallHarness

pytestmark = pytest.mark.usefixtures("aws_env")

REPO = Path(__file__).resolve().parents[2]


def spec(ws_url: str, http_url: str, rate: int) -> Any:
    return load_pipeline_text(
        f"""
name: aws-call
session:
  fallback_text: Sorry, something went wrong.
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 100, min_silence_ms: 400, forward_audio: true}}
  - type: voicebridge.stages.stt.transcribe:Transcribe
    params: {{endpoint: "{ws_url}", chunk_ms: 100}}
  - type: voicebridge.stages.dialogue.lex:LexDialogue
    params:
      bot_id: BOTID12345
      endpoint_url: "{http_url}"
      greeting: Thanks for calling the bakery.
  - type: voicebridge.stages.tts.polly:Polly
    params: {{endpoint_url: "{http_url}", voice_id: Joanna}}
  - type: encode
"""
    )


def agent_said(call: CallHarness) -> list[str]:
    return [e["text"] for e in call.timeline("agent_text")]


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_a_whole_call_from_greeting_to_hangup(rate: int) -> None:
    lines = ["when do you open", "goodbye"]
    async with (
        fakes.FakeTranscribe(lines=lines) as stt,
        fakes.FakeAwsHttp(ms_per_char=15) as http,
    ):
        async with CallHarness(spec(stt.url, http.url, rate), rate=rate) as call:
            await call.until(lambda: bool(call.acks_sent), limit_s=10)
            await call.idle(0.5)
            assert agent_said(call) == ["Thanks for calling the bakery."]

            await call.speak(speech_like(0.8, rate))
            await call.until(lambda: len(agent_said(call)) >= 2, limit_s=10)
            await call.idle(2.0)
            await call.speak(speech_like(0.6, rate))
            await call.until(lambda: call.session.ended.is_set(), limit_s=15)

        assert agent_said(call) == [
            "Thanks for calling the bakery.",
            "You said when do you open.",
            "Goodbye.",
            "Thanks for calling.",
        ]
        assert call.session.end_reason == "hangup:lex_fulfilled"
        # The caller heard every word: the history holds what was played.
        assert call.session.ctx is not None
        history = [(h.role, h.text) for h in call.session.ctx.history]
        assert history == [
            ("agent", "Thanks for calling the bakery."),
            ("caller", "when do you open"),
            ("agent", "You said when do you open."),
            ("caller", "goodbye"),
            ("agent", "Goodbye. Thanks for calling."),
        ]
        # One Transcribe stream for the whole call, at the call's own rate; one Lex session.
        assert len(stt.streams) == 1 and stt.streams[0].query["sample-rate"] == str(rate)
        assert {r.path.split("/")[8] for r in http.lex_requests()} == {"harness-call"}
        assert {r.json["SampleRate"] for r in http.polly_requests()} == {str(rate)}
        assert call.timeline("provider_error") == []


async def test_the_caller_cuts_a_long_reply_short() -> None:
    long_reply = (
        "Here is everything about our opening hours. We open at seven on weekdays. "
        "On Saturdays we open at eight. On Sundays we are closed."
    )

    def bot(text: str, body: dict[str, Any]) -> dict[str, Any]:
        content = long_reply if "everything" in text else f"You said {text}."
        return {
            "messages": [{"contentType": "PlainText", "content": content}],
            "sessionState": {"dialogAction": {"type": "ElicitIntent"}},
        }

    async with (
        fakes.FakeTranscribe(lines=["tell me everything", "stop there"]) as stt,
        fakes.FakeAwsHttp(ms_per_char=60, lex_reply=bot) as http,
    ):
        async with CallHarness(spec(stt.url, http.url, 8000)) as call:
            await call.until(lambda: bool(call.acks_sent), limit_s=10)
            await call.idle(2.0)
            await call.speak(speech_like(0.8, 8000))
            await call.until(lambda: len(call.events("playAudio")) >= 2, limit_s=10)
            await call.idle(1.0)  # the first sentence (2.6 s of audio) is playing
            await call.speak(speech_like(0.8, 8000))
            await call.until(lambda: "You said stop there." in agent_said(call), limit_s=10)
            await call.idle(3.0)

        assert call.events("clearAudio"), "the caller's speech cut the agent off"
        assert call.session.ctx is not None
        entries = [(h.role, h.text, h.interrupted) for h in call.session.ctx.history]
        reply = next(e for e in entries if e[0] == "agent" and e[1].startswith("Here"))
        assert reply[2] is True  # marked interrupted, and holds only what was heard
        assert "closed" not in reply[1]
        assert entries[-1] == ("agent", "You said stop there.", False)
        assert call.timeline("provider_error") == []


def _resolver(type_name: str) -> Any:
    """The registry's names, plus this family's (in case the registry does not list them yet)."""
    from voicebridge.runtime.registry import resolve_stage
    from voicebridge.stages.dialogue.lex import LexDialogue
    from voicebridge.stages.stt.transcribe import Transcribe
    from voicebridge.stages.tts.polly import Polly

    ours = {"transcribe": Transcribe, "lex": LexDialogue, "polly": Polly}
    return ours[type_name] if type_name in ours else resolve_stage(type_name)


def test_the_shipped_pipeline_file_loads_with_only_documented_variables() -> None:
    environ = {"LEX_BOT_ID": "BOTID12345"}
    spec = load_pipeline(REPO / "pipelines" / "aws.yaml", environ=environ, resolver=_resolver)
    names = [stage.type for stage in spec.stages]
    assert names == ["decode", "vad", "transcribe", "lex", "polly", "encode"]
    transcribe, lex, polly = (spec.stages[i].params.model_dump() for i in (2, 3, 4))
    assert (lex["bot_id"], lex["bot_alias_id"], lex["locale_id"]) == (
        "BOTID12345",
        "TSTALIASID",
        "en_US",
    )
    assert transcribe["language"] == "en-US" and polly["voice_id"] == "Joanna"
    # Endpoints unset: AWS's own (the empty ``${VAR:-}`` is no endpoint).
    assert (transcribe["endpoint"], lex["endpoint_url"], polly["endpoint_url"]) == (None,) * 3
    with pytest.raises(ConfigError, match="LEX_BOT_ID"):
        load_pipeline(REPO / "pipelines" / "aws.yaml", environ={}, resolver=_resolver)
