"""The ``openai_realtime`` stage's parameters, and the Realtime API events built from them.

Everything here is data: the ``session.update`` a new session is configured with (GA Realtime
API: ``session.type`` ``realtime``, ``audio.input`` / ``audio.output`` formats, voice, turn
detection, input transcription, tools), the ``response.create`` that asks the model to say a
given line, and the conversation items that replay the heard history. The stage sends them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from voicebridge.stages.openai_client import OpenAIClientParams
from voicebridge.stages.realtime.model_audio import L16_24K, MULAW_8K, WireFormat
from voicebridge.stages.realtime.params import SpeechToSpeechParams
from voicebridge.stages.realtime.replay import ReplayLine

TURN_KEY = "voicebridge_turn"  # response metadata: which agent turn a response we asked for is
SAY = (
    "Say the following to the caller, word for word, and nothing else. "
    "Do not answer it or add to it:\n{text}"
)


class OpenAIRealtimeParams(OpenAIClientParams, SpeechToSpeechParams):
    model: str = Field("gpt-realtime", description="Realtime model name")
    voice: str = Field(
        "marin",
        description="alloy, ash, ballad, coral, echo, sage, shimmer, verse, marin, cedar",
    )
    turn_detection: Literal["server_vad", "semantic_vad", "voicebridge"] = Field(
        "server_vad",
        description="who ends the caller's turn: the model's VAD, its semantic VAD, or "
        "voicebridge's vad stage (needs a `vad` with forward_audio before this stage)",
    )
    vad_threshold: float = Field(0.5, ge=0, le=1, description="server_vad: speech threshold")
    vad_silence_ms: int = Field(
        500, ge=100, le=5000, description="server_vad: silence that ends the caller's turn"
    )
    vad_prefix_ms: int = Field(
        300, ge=0, le=2000, description="server_vad: audio kept from before speech onset"
    )
    eagerness: Literal["low", "medium", "high", "auto"] = Field(
        "auto", description="semantic_vad: how soon the model takes its turn"
    )
    input_transcription: str | None = Field(
        "gpt-4o-mini-transcribe",
        description="model that transcribes the caller for the history (null: no transcripts)",
    )
    transcription_language: str | None = Field(
        None, description="the caller's language for transcription, e.g. 'en' (null: detect)"
    )
    audio_format: Literal["auto", "pcmu", "pcm"] = Field(
        "auto",
        description="audio to and from the model: pcmu (G.711 μ-law 8 kHz, the μ-law stream's "
        "own bytes), pcm (16-bit 24 kHz, resampled); auto: pcmu for μ-law streams",
    )
    noise_reduction: Literal["near_field", "far_field"] | None = Field(
        None, description="the model's input noise reduction (null: off)"
    )
    speed: float | None = Field(None, ge=0.25, le=1.5, description="speech rate (null: 1.0)")
    max_output_tokens: int | None = Field(
        None, ge=1, le=4096, description="cap on one reply's length (null: the model's)"
    )
    verify_at_start: bool = Field(
        True,
        description="at service start, open one session and ask for one token, so a bad key, "
        "model or setting fails start-up instead of every call",
    )


def wire_format(params: OpenAIRealtimeParams, encoding: str, rate: int) -> WireFormat:
    """The audio format both ways: μ-law 8 kHz where the stream is μ-law, else 24 kHz PCM."""
    choice = params.audio_format
    if choice == "auto":
        choice = "pcmu" if "mulaw" in encoding.lower() and rate == 8000 else "pcm"
    return MULAW_8K if choice == "pcmu" else L16_24K


def format_param(fmt: WireFormat) -> dict[str, Any]:
    if fmt.codec == "mulaw":
        return {"type": "audio/pcmu"}
    return {"type": "audio/pcm", "rate": fmt.rate}


def turn_detection(params: OpenAIRealtimeParams) -> dict[str, Any] | None:
    """Server turn detection, or None: voicebridge's VAD commits each turn itself.

    ``interrupt_response`` is off: whether caller speech cuts the agent off is voicebridge's
    decision (its guard, its words rule), and a cut-off reply is cancelled and truncated by the
    stage at exactly what was heard.
    """
    mode = params.turn_detection
    if mode == "voicebridge":
        return None
    if mode == "semantic_vad":
        return {
            "type": "semantic_vad",
            "eagerness": params.eagerness,
            "create_response": True,
            "interrupt_response": False,
        }
    return {
        "type": "server_vad",
        "threshold": params.vad_threshold,
        "silence_duration_ms": params.vad_silence_ms,
        "prefix_padding_ms": params.vad_prefix_ms,
        "create_response": True,
        "interrupt_response": False,
    }


def session_config(
    params: OpenAIRealtimeParams,
    fmt: WireFormat,
    functions: list[dict[str, Any]],
    instructions: str,
) -> dict[str, Any]:
    """The ``session`` of a ``session.update``."""
    audio_in: dict[str, Any] = {
        "format": format_param(fmt),
        "turn_detection": turn_detection(params),
    }
    if params.input_transcription:
        transcription: dict[str, Any] = {"model": params.input_transcription}
        if params.transcription_language:
            transcription["language"] = params.transcription_language
        audio_in["transcription"] = transcription
    if params.noise_reduction is not None:
        audio_in["noise_reduction"] = {"type": params.noise_reduction}
    audio_out: dict[str, Any] = {"format": format_param(fmt), "voice": params.voice}
    if params.speed is not None:
        audio_out["speed"] = params.speed
    session: dict[str, Any] = {
        "type": "realtime",
        "model": params.model,
        "instructions": instructions,
        "output_modalities": ["audio"],
        "audio": {"input": audio_in, "output": audio_out},
    }
    if functions:
        session["tools"] = [{"type": "function", **function} for function in functions]
        session["tool_choice"] = "auto"
    if params.max_output_tokens is not None:
        session["max_output_tokens"] = params.max_output_tokens
    return session


def respond(turn: int, *, say: str | None = None, tools: bool = True) -> dict[str, Any]:
    """A ``response.create`` for agent turn ``turn`` (echoed back in the response's metadata):
    the model's own answer, or, with ``say``, that line read out."""
    response: dict[str, Any] = {"metadata": {TURN_KEY: str(turn)}}
    if say is not None:
        response["instructions"] = SAY.format(text=say)
        response["tool_choice"] = "none"
    elif not tools:
        response["tool_choice"] = "none"
    return {"type": "response.create", "response": response}


def turn_of(response: Any) -> int | None:
    """The agent turn a response was asked for (None: the server started it on its own)."""
    metadata = response.get("metadata") if isinstance(response, dict) else None
    value = metadata.get(TURN_KEY) if isinstance(metadata, dict) else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def history_item(line: ReplayLine) -> dict[str, Any]:
    """A ``conversation.item.create`` replaying one heard line (text only)."""
    kind = "input_text" if line.role == "user" else "output_text"
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": line.role,
            "content": [{"type": kind, "text": line.text}],
        },
    }


def user_text(text: str) -> dict[str, Any]:
    return history_item(ReplayLine("user", text))


def tool_output(call_id: str, output: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def append_json(audio_b64: str) -> str:
    """The hot path's event, 50 a second per call: built as text, never through a model."""
    return '{"type":"input_audio_buffer.append","audio":"' + audio_b64 + '"}'


def probe_response() -> dict[str, Any]:
    """An out-of-band, one-token text response: does this key reach this model?"""
    return {
        "type": "response.create",
        "response": {
            "conversation": "none",
            "output_modalities": ["text"],
            "max_output_tokens": 1,
            "input": [user_text("Say OK.")["item"]],
        },
    }
