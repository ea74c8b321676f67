"""The ``gemini_live`` stage's parameters, the Live API session it opens, and its error mapping.

Data only: the ``LiveConnectConfig`` a session starts with (audio out, the voice, the
instructions, both transcriptions, turn detection, tools, session resumption, and for a
re-established session either the handle it resumes or the heard history as its initial
``client_content``), the note a cut-off reply leaves the model, and
how the SDK's failures (an HTTP status, or a WebSocket close code with Google's reason) become a
``ProviderError``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator

from voicebridge.runtime.providers import ErrorKind, ProviderError, kind_from_http_status
from voicebridge.runtime.resilience import ResilienceParams
from voicebridge.stages.realtime.params import SpeechToSpeechParams
from voicebridge.stages.realtime.replay import ReplayLine

PROVIDER = "gemini"
SAY = "Say this to the caller, word for word, and nothing else:\n{text}"
HEARD = (
    "(Note, not from the caller: the caller interrupted your last reply. They heard only "
    'this much of it: "{heard}". Whatever came after that they did not hear.)'
)
HEARD_NOTHING = (
    "(Note, not from the caller: the caller interrupted your last reply before hearing any of it.)"
)


class GeminiLiveParams(SpeechToSpeechParams):
    model: str = Field(
        "gemini-live-2.5-flash-preview", description="Live API model (native audio or half cascade)"
    )
    voice: str = Field("Puck", description="a prebuilt voice: Puck, Charon, Kore, Fenrir, Aoede...")
    language: str | None = Field(None, description="speech language code, e.g. en-US (null: auto)")
    temperature: float | None = Field(None, ge=0, le=2, description="null = the model's default")
    turn_detection: Literal["server", "voicebridge"] = Field(
        "server",
        description="who ends the caller's turn: Gemini's own activity detection, or the "
        "`vad` stage before this one (activityStart / activityEnd)",
    )
    silence_ms: int | None = Field(
        None, ge=100, le=5000, description="server: silence that ends the caller's turn"
    )
    transcribe: bool = Field(True, description="transcripts of both sides for the history")
    api_key_env: str = Field("GEMINI_API_KEY", description="variable holding the Gemini API key")
    base_url: str | None = Field(
        None, description="another endpoint (a proxy); null = Google's (wss)"
    )
    connect_timeout_s: float = Field(5.0, gt=0, le=60, description="open + set up the session")
    timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="a reply that has not begun this long after the caller's turn ended (or a "
        "line was asked for) has stalled: the call says its fallback",
    )
    resume: bool = Field(
        True,
        description="ask Gemini for session resumption handles, and re-establish a dropped or "
        "moved session by the newest one when Gemini said it was resumable then (else, or if it "
        "is refused, a new session is given the heard history)",
    )
    verify_at_start: bool = Field(
        True, description="at service start, open one session, so a bad key or model fails it"
    )
    resilience: ResilienceParams = Field(
        default_factory=lambda: ResilienceParams(),
        description="retries, backoff and circuit breaker of the session's connections",
    )

    @field_validator("base_url")
    @classmethod
    def _empty_is_default(cls, value: str | None) -> str | None:
        return (value or "").strip() or None


def api_key(stage: str, params: GeminiLiveParams) -> str:
    key = os.environ.get(params.api_key_env, "").strip()
    if not key:
        raise ProviderError(
            stage,
            PROVIDER,
            "auth",
            f"no API key: set the environment variable {params.api_key_env}",
        )
    return key


def live_config(
    params: GeminiLiveParams,
    functions: list[dict[str, Any]],
    instructions: str,
    *,
    history: bool = False,
    handle: str | None = None,
) -> dict[str, Any]:
    """The session's ``LiveConnectConfig`` (as the SDK's dict form): with ``history``, the
    heard history comes first as ``client_content``; with ``handle``, it resumes that session."""
    speech: dict[str, Any] = {
        "voice_config": {"prebuilt_voice_config": {"voice_name": params.voice}}
    }
    if params.language:
        speech["language_code"] = params.language
    config: dict[str, Any] = {
        "response_modalities": ["AUDIO"],
        "system_instruction": instructions,
        "speech_config": speech,
    }
    if params.temperature is not None:
        config["temperature"] = params.temperature
    if params.transcribe:
        config["input_audio_transcription"] = {}
        config["output_audio_transcription"] = {}
    detection: dict[str, Any] = {}
    if params.turn_detection == "voicebridge":
        detection["disabled"] = True
    elif params.silence_ms is not None:
        detection["silence_duration_ms"] = params.silence_ms
    if detection:
        config["realtime_input_config"] = {"automatic_activity_detection": detection}
    if functions:
        declarations = [
            {
                "name": function["name"],
                "description": function.get("description", ""),
                "parameters_json_schema": function.get("parameters", {"type": "object"}),
            }
            for function in functions
        ]
        config["tools"] = [{"function_declarations": declarations}]
    if history:
        config["history_config"] = {"initial_history_in_client_content": True}
    if params.resume:
        config["session_resumption"] = {"handle": handle} if handle else {}
    return config


def history_turns(lines: list[ReplayLine]) -> list[dict[str, Any]]:
    """The heard history as ``Content`` turns (the model is ``model``, the caller ``user``)."""
    return [
        {"role": "user" if line.role == "user" else "model", "parts": [{"text": line.text}]}
        for line in lines
    ]


def heard_note(heard: str) -> str:
    heard = " ".join(heard.split())
    return HEARD.format(heard=heard) if heard else HEARD_NOTHING


def live_error(stage: str, exc: BaseException) -> ProviderError:
    """What the SDK raised (an ``APIError`` with an HTTP status or a close code, a socket
    error, a timeout) as one ProviderError."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, TimeoutError):
        return ProviderError(stage, PROVIDER, "timeout", "no answer in time")
    code = getattr(exc, "code", None)
    message = str(getattr(exc, "message", None) or getattr(exc, "details", None) or exc)[:300]
    if isinstance(code, int):
        return ProviderError(stage, PROVIDER, _kind(code, message), message, status=code)
    if isinstance(exc, OSError):
        return ProviderError(stage, PROVIDER, "unavailable", f"connection failed: {exc!r}"[:300])
    return ProviderError(stage, PROVIDER, "other", f"{type(exc).__name__}: {message}"[:300])


def _kind(code: int, message: str) -> ErrorKind:
    if code >= 1000:  # a WebSocket close code, with Google's reason as the message
        lowered = message.lower()
        if "api key" in lowered or "permission" in lowered or "unauthenticated" in lowered:
            return "auth"
        if "quota" in lowered or "resource_exhausted" in lowered:
            return "quota"
        if code in (1007, 1008):
            return "invalid"
        return "unavailable"
    return kind_from_http_status(code)
