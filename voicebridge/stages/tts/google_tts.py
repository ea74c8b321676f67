"""The ``google_tts`` stage: the agent's reply spoken by Google Cloud Text-to-Speech.

Each ``AgentText`` piece is split into sentences and each sentence is one ``SynthesizeSpeech``
call, so the caller hears the first sentence while the next is being made. Audio is requested at
the stream's own rate in the stream's own codec (MULAW for μ-law calls, LINEAR16 otherwise), so
nothing is resampled; Google wraps both in a WAV header, which is parsed and stripped (and its
rate checked: if it ever differs, the audio is resampled rather than played at the wrong speed).

SSML is sent as SSML when the text starts with ``<speak>`` or ``ssml: true`` (a piece of SSML is
never split into sentences, which would break its markup). ``SynthesizeSpeech`` has no side
effects, so transient failures (unavailable, timeout) are retried a bounded number of times.
A barge-in cancels ``process`` while it awaits Google: the gRPC call is cancelled with it and
the rest of the piece is never requested.
"""

from __future__ import annotations

import re
import struct
import time
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
from voicebridge.audio.resample import resample
from voicebridge.frames import PCM, AgentAudio, AgentText, AudioIn, Frame
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.resilience import ResilienceParams, stage_guard
from voicebridge.runtime.stage import Stage, StageParams
from voicebridge.stages.google_common import (
    GoogleParams,
    build_client,
    client_credentials,
    close_client,
    with_retries,
)
from voicebridge.text import split_sentences

PROVIDER = "google-tts"
_RETRY_ON = frozenset({"unavailable", "timeout"})
_EMPTY_TURN_END_MS = 20  # an empty final piece still ends its turn, with this much silence
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


class GoogleTts(Stage):
    type_name = "google_tts"
    role = "tts"
    passthrough = (AudioIn,)  # caller audio goes around this stage
    description = "Speaks the agent's reply with Google Cloud Text-to-Speech, sentence by sentence."
    Params = GoogleTtsParams

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

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AgentText):
            await self._speak(frame)
            return
        await self.emit(frame)

    async def _speak(self, frame: AgentText) -> None:
        rate = self.ctx.info.sample_rate
        text = frame.text.strip()
        is_ssml = self.params.ssml or text.startswith("<speak")
        if is_ssml:
            if text and not text.startswith("<speak"):
                text = f"<speak>{text}</speak>"
            pieces = [text] if _TAG.sub("", text).strip() else []
        else:
            pieces = split_sentences(text)
        started = time.perf_counter()
        sent_any = False
        for index, piece in enumerate(pieces):
            if self.ctx.is_stale(frame.turn):
                return  # interrupted between sentences: do not synthesise the rest
            last = frame.last and index == len(pieces) - 1
            try:
                pcm = await self._synthesize(piece, is_ssml, rate)
            except ProviderError:
                if frame.last:  # close the turn, so the session does not wait for its end
                    silence = np.zeros(_EMPTY_TURN_END_MS * rate // 1000, np.int16)
                    await self.emit(AgentAudio(pcm=silence, turn=frame.turn, text="", last=True))
                raise
            if not pcm.size and not last:
                continue
            if not pcm.size:
                pcm = np.zeros(_EMPTY_TURN_END_MS * rate // 1000, np.int16)
            if not sent_any:
                sent_any = True
                self.log.info(
                    "tts_first_audio",
                    ms=round(1000 * (time.perf_counter() - started)),
                    turn=frame.turn,
                    sentences=len(pieces),
                    chars=len(frame.text),
                    audio_ms=round(1000 * pcm.size / rate),
                )
            spoken = " ".join(_TAG.sub("", piece).split()) if is_ssml else piece
            said = frame.text if len(pieces) == 1 and not is_ssml else spoken
            await self.emit(AgentAudio(pcm=pcm, turn=frame.turn, text=said, last=last))
        if frame.last and not pieces:
            silence = np.zeros(_EMPTY_TURN_END_MS * rate // 1000, np.int16)
            await self.emit(AgentAudio(pcm=silence, turn=frame.turn, text="", last=True))

    async def _synthesize(self, piece: str, is_ssml: bool, rate: int) -> PCM:
        p: GoogleTtsParams = self.params
        request = tts.SynthesizeSpeechRequest(
            input=tts.SynthesisInput(ssml=piece) if is_ssml else tts.SynthesisInput(text=piece),
            voice=self._voice,
            audio_config=self._audio_config,
        )

        async def call() -> Any:
            return await self._client.synthesize_speech(
                request=request, retry=None, timeout=p.timeout_s
            )

        response = await with_retries(
            call,
            stage=self.name,
            provider=PROVIDER,
            retries=p.retries,
            retry_on=_RETRY_ON,
            log=self.log,
            guard=self.guard,
            clock=self.ctx.clock,
        )
        try:
            pcm, got_rate = decode_audio(response.audio_content, self._encoding, rate)
        except ValueError as exc:
            raise ProviderError(self.name, PROVIDER, "other", str(exc)) from exc
        if pcm.size and got_rate != rate:
            self.log.warning("tts_rate_mismatch", asked=rate, got=got_rate)
            pcm = resample(pcm, got_rate, rate)
        return pcm
