"""The ``google_tts`` stage: the agent's reply spoken by Google Cloud Text-to-Speech.

Each sentence is one ``SynthesizeSpeech`` call (the speaking loop is
:class:`~voicebridge.stages.tts.speaker.Speaker`'s). Audio is requested at
the stream's own rate in the stream's own codec (MULAW for μ-law calls, LINEAR16 otherwise), so
nothing is resampled; Google wraps both in a WAV header, which is parsed and stripped (and its
rate checked: if it ever differs, the audio is resampled rather than played at the wrong speed).

SSML is sent as SSML when the text starts with ``<speak>`` or ``ssml: true`` (a piece of SSML is
never split into sentences, which would break its markup). ``SynthesizeSpeech`` has no side
effects, so transient failures (unavailable, timeout) are retried a bounded number of times; a
final piece that still fails ends its turn with silence. A barge-in cancels ``process`` while it
awaits Google: the gRPC call is cancelled with it and the rest of the piece is never requested.
"""

from __future__ import annotations

import re
import struct
from typing import Any, Literal

import numpy as np
from google.cloud import texttospeech_v1 as tts
from google.cloud.texttospeech_v1.services.text_to_speech.transports import (
    TextToSpeechGrpcAsyncIOTransport,
)
from pydantic import Field

from voicebridge.audio.codec import codec_for
from voicebridge.audio.l16 import l16_decode
from voicebridge.audio.mulaw import mulaw_decode
from voicebridge.frames import PCM
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.resilience import ResilienceParams, stage_guard
from voicebridge.runtime.stage import StageParams
from voicebridge.stages.google_common import (
    GoogleParams,
    build_client,
    client_credentials,
    close_client,
    guarded_call,
)
from voicebridge.stages.tts.speaker import Speaker, Speech
from voicebridge.text import split_sentences

PROVIDER = "google-tts"
_RETRY_ON = frozenset({"unavailable", "timeout"})
_TAG = re.compile(r"<[^>]+>")

_WAVE_PCM = 1
_WAVE_MULAW = 7


class GoogleTtsParams(GoogleParams):
    voice: str = Field(
        "", description="voice name, e.g. en-US-Neural2-F; empty = Google's pick for `language`"
    )
    language: str = Field("en-US", description="BCP-47 language code of the voice")
    speaking_rate: float = Field(1.0, ge=0.25, le=4.0, description="1.0 = the voice's normal")
    pitch: float = Field(0.0, ge=-20.0, le=20.0, description="semitones up or down")
    volume_gain_db: float = Field(0.0, ge=-96.0, le=16.0, description="loudness change in dB")
    ssml: bool = Field(False, description="treat every piece as SSML (also: text starting <speak>)")
    effects_profile: list[str] = Field(
        default_factory=lambda: ["telephony-class-application"],
        description="audio effects profiles; the default is tuned for phone lines",
    )
    audio_encoding: Literal["auto", "linear16", "mulaw"] = Field(
        "auto", description="what to ask Google for: auto = the call's codec"
    )
    timeout_s: float = Field(10.0, gt=0, le=60, description="deadline of one request")
    retries: int = Field(2, ge=0, le=5, description="retries of a request after a transient error")
    resilience: ResilienceParams = Field(
        default_factory=lambda: ResilienceParams(),
        description="first-byte deadline, circuit breaker; retries override retries",
    )


def parse_wav(data: bytes) -> tuple[int, int, int, bytes] | None:
    """``(format_tag, channels, rate, samples)`` of a RIFF/WAVE file; None when not one."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset = 12
    fmt: tuple[int, int, int] | None = None
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body_at = offset + 8
        if chunk_id == b"fmt " and size >= 16:
            tag, channels, rate = struct.unpack_from("<HHI", data, body_at)
            fmt = (tag, channels, rate)
        elif chunk_id == b"data" and fmt is not None:
            # Streaming encoders write 0 or 0xFFFFFFFF as the size: take what is there.
            end = len(data) if size in (0, 0xFFFFFFFF) else min(len(data), body_at + size)
            return fmt[0], fmt[1], fmt[2], data[body_at:end]
        offset = body_at + size + (size & 1)
    return None


def decode_audio(content: bytes, encoding: str, requested_rate: int) -> tuple[PCM, int]:
    """Google's audio_content to int16 PCM and its rate (WAV header stripped when present)."""
    wav = parse_wav(content)
    if wav is None:
        pcm = (
            mulaw_decode(content)
            if encoding == "mulaw"
            else l16_decode(content[: len(content) // 2 * 2])
        )
        return pcm, requested_rate
    tag, channels, rate, samples = wav
    if tag == _WAVE_MULAW:
        pcm = mulaw_decode(samples)
    elif tag == _WAVE_PCM:
        pcm = l16_decode(samples[: len(samples) // 2 * 2])
    else:
        raise ValueError(f"unexpected WAV format tag {tag} from Text-to-Speech")
    if channels > 1:
        pcm = np.ascontiguousarray(
            pcm[: len(pcm) // channels * channels].reshape(-1, channels)[:, 0]
        )
    return pcm, rate


class GoogleTts(Speaker):
    type_name = "google_tts"
    description = "Speaks the agent's reply with Google Cloud Text-to-Speech, sentence by sentence."
    Params = GoogleTtsParams
    close_turn_on_error = True

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: GoogleTtsParams = self.params
        self.guard = stage_guard(
            self.name,
            PROVIDER,
            p.endpoint or "texttospeech.googleapis.com",
            p.resilience,
            retries=p.retries,
            retry_if=lambda error: error.kind in _RETRY_ON,
        )
        self._client: Any = None
        self._encoding = "linear16"
        self._voice: tts.VoiceSelectionParams | None = None
        self._audio_config: tts.AudioConfig | None = None

    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """Resolve credentials at service start: a missing key fails before any call."""
        assert isinstance(params, GoogleTtsParams)
        await client_credentials(cls.type_name, params)

    async def start(self) -> None:
        p: GoogleTtsParams = self.params
        credentials, _project = await client_credentials(self.name, p)
        info = self.ctx.info
        if p.audio_encoding == "auto":
            mulaw = codec_for(info.encoding).name == "audio/x-mulaw"
            self._encoding = "mulaw" if mulaw else "linear16"
        else:
            self._encoding = p.audio_encoding
        self._voice = tts.VoiceSelectionParams(language_code=p.language, name=p.voice)
        self._audio_config = tts.AudioConfig(
            audio_encoding=(
                tts.AudioEncoding.MULAW if self._encoding == "mulaw" else tts.AudioEncoding.LINEAR16
            ),
            sample_rate_hertz=info.sample_rate,
            speaking_rate=p.speaking_rate,
            pitch=p.pitch,
            volume_gain_db=p.volume_gain_db,
            effects_profile_id=list(p.effects_profile),
        )
        self._client = build_client(
            tts.TextToSpeechAsyncClient,
            TextToSpeechGrpcAsyncIOTransport,
            endpoint=p.endpoint,
            insecure=p.insecure,
            credentials=credentials,
        )

    async def stop(self) -> None:
        client, self._client = self._client, None
        await close_client(client)

    def _is_ssml(self, text: str) -> bool:
        return self.params.ssml or text.lstrip().startswith("<speak")

    def pieces(self, text: str) -> list[str]:
        text = text.strip()
        if not self._is_ssml(text):
            return split_sentences(text)
        # A piece of SSML is one document: wrapped if need be, never split, skipped if wordless.
        if text and not text.startswith("<speak"):
            text = f"<speak>{text}</speak>"
        return [text] if _TAG.sub("", text).strip() else []

    def heard(self, said: str) -> str:
        return " ".join(_TAG.sub("", said).split()) if self._is_ssml(said) else said

    async def synthesize(self, text: str) -> Speech:
        """One sentence (or SSML document) in the call's codec and rate, its WAV header gone."""
        p: GoogleTtsParams = self.params
        rate = self.ctx.info.sample_rate
        ssml = self._is_ssml(text)
        request = tts.SynthesizeSpeechRequest(
            input=tts.SynthesisInput(ssml=text) if ssml else tts.SynthesisInput(text=text),
            voice=self._voice,
            audio_config=self._audio_config,
        )

        async def call() -> Any:
            return await self._client.synthesize_speech(
                request=request, retry=None, timeout=p.timeout_s
            )

        response = await guarded_call(
            call,
            guard=self.guard,
            stage=self.name,
            provider=PROVIDER,
            clock=self.ctx.clock,
            log=self.log,
        )
        try:
            pcm, got_rate = decode_audio(response.audio_content, self._encoding, rate)
        except ValueError as exc:
            raise ProviderError(self.name, PROVIDER, "other", str(exc)) from exc
        if pcm.size and got_rate != rate:
            self.log.warning("tts_rate_mismatch", asked=rate, got=got_rate)  # the speaker resamples
        return Speech(pcm, got_rate)
