"""The ``google_stt`` stage: streaming transcription with Google Cloud Speech-to-Text (v2 or v1).

The caller's audio is streamed continuously (the pipeline's ``vad`` must forward audio, its
default) over one gRPC ``StreamingRecognize`` stream, in ``chunk_ms`` pieces. ``process`` never
waits for the network: audio goes into a bounded queue that the stream's request generator
drains, and when Google falls behind the oldest audio is dropped and counted. Interim results
become non-final ``Transcript`` frames (barge-in counts their words), final results final ones.

Turn-taking stays with the VAD (``align_to_vad``): Google's endpointer often finalizes at a short
pause that the VAD bridges, or before the VAD has heard the end of speech. Such finals are shown
as interim words and held until the VAD's ``SpeechEnded``, then released together as the
utterance's one final transcript, after the ``SpeechEnded`` frame (the rule every streaming
transcriber shares, :mod:`voicebridge.stages.stt.finals`). So a dialogue answers once per caller
turn, and never while the session still hears the caller speaking (which would make it barge in
on its own reply).

Audio is sent in the call's own codec: μ-law calls are sent as MULAW (re-encoding the decoded
samples is bit-exact, and it is half the bytes of LINEAR16), L16 calls as LINEAR16, both at the
stream's rate with an explicit decoding config. ``encoding`` forces one or the other.

A Google stream lives at most about five minutes, so after ``restart_after_s`` of audio the stage
opens a new stream at the next moment the caller is silent (by the VAD; at the latest 8 s later)
and sends the following audio there; the old stream is half-closed, finishes its last results,
and those are emitted before any of the new stream's, so transcripts stay in audio order. A
stream that fails is reported once as a ``ProviderError`` (the session then speaks its fallback
line) and reopened on later audio, at once for a transient error and with growing back-off when
it keeps failing; the audio queued meanwhile (up to ``buffer_ms``) is sent to the new stream.

At the VAD's pause (``SpeechPaused``) the stage passes the caller's words so far back to the VAD's
end-of-turn decision (``text_cues``) once a result reaches the pause: an interim result that has
heard the audio up to where the silence began (its ``result_end_offset``), or a final that ends
about there (:mod:`voicebridge.stages.stt.pause_words`). Result times are mapped from each
stream's own clock to the call's through the audio that stream was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import numpy as np
from google.cloud import speech_v1, speech_v2
from google.cloud.speech_v1.services.speech.transports import (
    SpeechGrpcAsyncIOTransport as V1Transport,
)
from google.cloud.speech_v2.services.speech.transports import (
    SpeechGrpcAsyncIOTransport as V2Transport,
)
from pydantic import Field

from voicebridge.audio.codec import codec_for
from voicebridge.audio.l16 import l16_encode
from voicebridge.audio.mulaw import mulaw_encode_bytes
from voicebridge.clock import wait_for
from voicebridge.frames import (
    PCM,
    AudioIn,
    CallEnded,
    Frame,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    Transcript,
)
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.stage import Stage, StageParams
from voicebridge.stages.google_common import (
    GoogleParams,
    build_client,
    client_credentials,
    close_client,
    provider_error,
    resolve_project,
)
from voicebridge.stages.stt.early_words import PauseWordsFeed, early_words_field, slack_field
from voicebridge.stages.stt.finals import AfterSpeech, FinalWait, UtteranceFinals
from voicebridge.stages.stt.pause_words import Heard
from voicebridge.stages.stt.sent_audio import SentAudio

PROVIDER = "google-speech"
_HARD_RESTART_GRACE_S = 8.0  # past restart_after_s, switch streams even mid-speech
_HEALTHY_STREAM_MS = 5000.0  # a stream that took this much audio did work: reset the streak
_MAX_BACKOFF_MS = 30_000.0
_PERMANENT_BACKOFF_MS = 30_000.0  # auth/invalid/quota: try again only after this much audio
_STREAM_DEADLINE_EXTRA_S = 120.0
_INTERIM_REPEAT_MS = 1000.0  # interim words this recent are repeated at the VAD's speech onset
_MAX_HOLD_MS = 8000.0  # a final is held for the VAD's end of speech at most this long


class GoogleSttParams(GoogleParams):
    api_version: Literal["v2", "v1"] = Field("v2", description="Speech-to-Text API version")
    location: str = Field("global", description="v2 location (regional endpoint when not global)")
    recognizer: str = Field(
        "_", description="v2 recognizer id or full path; '_' = none, the config is in the request"
    )
    model: str = Field("telephony", description="recognition model, e.g. telephony, long, chirp_2")
    language: str = Field("en-US", description="BCP-47 language code")
    phrases: list[str] = Field(
        default_factory=list, description="phrase hints: names and words callers use"
    )
    boost: float | None = Field(None, ge=0, le=20, description="weight of the phrase hints")
    interim_results: bool = Field(True, description="also emit interim (non-final) transcripts")
    single_utterance: bool = Field(
        False, description="a new stream per utterance (v1 natively; v2 after each final)"
    )
    punctuation: bool = Field(True, description="automatic punctuation")
    endpointing: Literal["standard", "short", "supershort"] | None = Field(
        None, description="v2 endpointing sensitivity: shorter = faster finals"
    )
    encoding: Literal["auto", "linear16", "mulaw"] = Field(
        "auto", description="audio sent: auto = the call's codec (MULAW for mu-law calls)"
    )
    chunk_ms: int = Field(100, ge=20, le=1000, description="audio per request message")
    restart_after_s: float = Field(
        290.0, ge=0.5, le=290.0, description="open a new stream after this much audio"
    )
    buffer_ms: int = Field(
        5000, ge=200, le=60_000, description="audio queued for a slow or reopening stream"
    )
    final_wait_ms: int = Field(
        2000, ge=0, le=10_000, description="at call end, wait this long for the last results"
    )
    align_to_vad: bool = Field(
        True,
        description="one final per VAD utterance: finals made while the VAD still hears "
        "speech are held (shown as interim) until it ends",
    )
    early_words: bool = early_words_field()
    early_words_slack_ms: int = slack_field()


@dataclass(slots=True)
class _Chunk:
    data: bytes
    start_ms: float
    ms: float


@dataclass(eq=False)
class _Stream:
    """One StreamingRecognize call and the queue of audio it sends."""

    number: int
    feed: asyncio.Queue[_Chunk | None]
    fed_ms: float = 0.0
    sent: SentAudio = field(default_factory=SentAudio)  # its offsets -> the call's stream ms
    task: asyncio.Task[None] | None = None
    responded: bool = False
    ended: bool = False  # its audio is complete: the end marker was queued
    finals: int = 0
    last_interim: str = ""


def _offset_ms(value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds() * 1000.0
    return 0.0


class GoogleStt(Stage):
    type_name = "google_stt"
    role = "stt"
    inline = (AudioIn,)  # caller audio is only buffered: taken directly while idle
    consumes = (AudioIn, SpeechEnded)  # streams the audio; finals wait for the end of speech
    description = "Streams the caller's audio to Google Cloud Speech-to-Text (v2 or v1)."
    Params = GoogleSttParams

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._client: Any = None
        self._config_request: Any = None
        self._encoding = "linear16"
        self._rate = 8000
        self._feed: asyncio.Queue[_Chunk | None] = asyncio.Queue()
        self._feed_limit = 1
        self._stream: _Stream | None = None
        self._streams: set[_Stream] = set()
        self._last_task: asyncio.Task[None] | None = None
        self._opened = 0
        self._pending: list[PCM] = []
        self._pending_samples = 0
        self._pending_start_ms = 0.0
        self._chunk_samples = 800
        self._now_ms = 0.0
        self._speech_ended_at: float | None = None
        # Finals held until the VAD's end of speech (align_to_vad), and whether Google has
        # words it has not finalized yet.
        self._finals = UtteranceFinals(hold=self.params.align_to_vad, max_hold_ms=_MAX_HOLD_MS)
        self._final_wait = FinalWait(self, self._release)
        self._unfinal = False
        self._interim_text = ""  # the newest interim words shown, and when (audio time)
        self._interim_ms = 0.0
        self._heard_audio = False
        self._warned_no_audio = False
        self.dropped_chunks = 0
        self._error: ProviderError | None = None
        self._failures = 0
        self._retry_at_ms = 0.0
        self._closing = False
        self.pause_words = PauseWordsFeed(self.params.early_words, self.params.early_words_slack_ms)

    @property
    def streaming(self) -> bool:
        """A stream is open and takes the caller's audio (False while one is being reopened)."""
        stream = self._stream
        return stream is not None and stream.task is not None and not stream.task.done()

    # --- set-up ---------------------------------------------------------------------------
    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """Resolve credentials (and the v2 project) at service start: fail before any call."""
        assert isinstance(params, GoogleSttParams)
        _credentials, adc_project = await client_credentials(cls.type_name, params)
        if params.api_version == "v2" and "/" not in params.recognizer:
            resolve_project(cls.type_name, params.project, adc_project)

    async def start(self) -> None:
        p: GoogleSttParams = self.params
        credentials, adc_project = await client_credentials(self.name, p)
        info = self.ctx.info
        self._rate = info.sample_rate
        if p.encoding == "auto":
            mulaw = codec_for(info.encoding).name == "audio/x-mulaw"
            self._encoding = "mulaw" if mulaw else "linear16"
        else:
            self._encoding = p.encoding
        self._chunk_samples = max(1, self._rate * p.chunk_ms // 1000)
        self._feed_limit = max(2, p.buffer_ms // p.chunk_ms)
        self._feed = asyncio.Queue()
        if p.api_version == "v2":
            recognizer = p.recognizer
            if "/" not in recognizer:
                project = resolve_project(self.name, p.project, adc_project)
                recognizer = f"projects/{project}/locations/{p.location}/recognizers/{recognizer}"
            endpoint = p.endpoint
            if not endpoint and p.location != "global":
                endpoint = f"{p.location}-speech.googleapis.com"
            self._config_request = self._v2_config(recognizer)
            self._client = build_client(
                speech_v2.SpeechAsyncClient,
                V2Transport,
                endpoint=endpoint,
                insecure=p.insecure,
                credentials=credentials,
            )
        else:
            self._config_request = self._v1_config()
            self._client = build_client(
                speech_v1.SpeechAsyncClient,
                V1Transport,
                endpoint=p.endpoint,
                insecure=p.insecure,
                credentials=credentials,
            )
        self.pause_words.start(self.ctx, self.log)
        # Open the stream now: the configuration goes out alone (a refusal, e.g. of the
        # credentials or the model, comes back before any audio is in flight) and the stream
        # is ready when the caller speaks.
        self._open_stream()

    def _v2_config(self, recognizer: str) -> speech_v2.StreamingRecognizeRequest:
        p: GoogleSttParams = self.params
        v2 = speech_v2
        encoding = v2.ExplicitDecodingConfig.AudioEncoding
        config = v2.RecognitionConfig(
            explicit_decoding_config=v2.ExplicitDecodingConfig(
                encoding=encoding.MULAW if self._encoding == "mulaw" else encoding.LINEAR16,
                sample_rate_hertz=self._rate,
                audio_channel_count=1,
            ),
            model=p.model,
            language_codes=[p.language],
            features=v2.RecognitionFeatures(enable_automatic_punctuation=p.punctuation),
        )
        if p.phrases:
            phrase_set = v2.PhraseSet(
                phrases=[v2.PhraseSet.Phrase(value=phrase) for phrase in p.phrases]
            )
            if p.boost is not None:
                phrase_set.boost = p.boost
            config.adaptation = v2.SpeechAdaptation(
                phrase_sets=[v2.SpeechAdaptation.AdaptationPhraseSet(inline_phrase_set=phrase_set)]
            )
        features = v2.StreamingRecognitionFeatures(interim_results=p.interim_results)
        if p.endpointing is not None:
            sensitivity = v2.StreamingRecognitionFeatures.EndpointingSensitivity
            features.endpointing_sensitivity = {  # type: ignore[assignment]
                "standard": sensitivity.ENDPOINTING_SENSITIVITY_STANDARD,
                "short": sensitivity.ENDPOINTING_SENSITIVITY_SHORT,
                "supershort": sensitivity.ENDPOINTING_SENSITIVITY_SUPERSHORT,
            }[p.endpointing]
        return v2.StreamingRecognizeRequest(
            recognizer=recognizer,
            streaming_config=v2.StreamingRecognitionConfig(
                config=config, streaming_features=features
            ),
        )

    def _v1_config(self) -> speech_v1.StreamingRecognizeRequest:
        p: GoogleSttParams = self.params
        v1 = speech_v1
        encoding = v1.RecognitionConfig.AudioEncoding
        config = v1.RecognitionConfig(
            encoding=encoding.MULAW if self._encoding == "mulaw" else encoding.LINEAR16,
            sample_rate_hertz=self._rate,
            audio_channel_count=1,
            language_code=p.language,
            model=p.model,
            enable_automatic_punctuation=p.punctuation,
        )
        if p.phrases:
            context = v1.SpeechContext(phrases=list(p.phrases))
            if p.boost is not None:
                context.boost = p.boost
            config.speech_contexts = [context]
        return v1.StreamingRecognizeRequest(
            streaming_config=v1.StreamingRecognitionConfig(
                config=config,
                interim_results=p.interim_results,
                single_utterance=p.single_utterance,
            )
        )

    # --- frames ---------------------------------------------------------------------------
    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AudioIn):
            self._audio(frame)
            if self._finals.overdue(self._now_ms):
                await self._release()  # the VAD never ended the utterance: do not wait more
        elif isinstance(frame, SpeechPaused):
            self.pause_words.paused(frame.at_ms)
        elif isinstance(frame, SpeechStarted):
            self.pause_words.speech_started(frame.at_ms)
            self._finals.speech_started()
            self._final_wait.cancel()
            await self.emit(frame)
            # Google's first words can come before the VAD is sure of speech (it needs
            # min_speech_ms): say them again inside the utterance, where barge-in counts them.
            recent = self._now_ms - self._interim_ms <= _INTERIM_REPEAT_MS
            if self._interim_text and recent:
                await self.emit(Transcript(self._interim_text, False, None, frame.at_ms))
            self._raise_pending()
            return
        elif isinstance(frame, SpeechEnded):
            self.pause_words.speech_ended()
            self._speech_ended_at = self.ctx.clock.now()
            await self.emit(frame)  # the end of speech first, then its transcript
            if not self._heard_audio and not self._warned_no_audio:
                self._warned_no_audio = True
                self.log.error(
                    "stt_no_audio",
                    reason="google_stt streams AudioIn frames: set the vad's forward_audio: true",
                )
            # Google owes words it has shown while a stream that can still send them lives;
            # an open stream may finalize words it has not shown yet.
            after = self._finals.speech_ended(
                owed=self._unfinal and bool(self._streams), expecting=self._stream is not None
            )
            if after is AfterSpeech.RELEASE:
                await self._release()
            elif after is AfterSpeech.WAIT:
                self._final_wait.start(self.params.final_wait_ms / 1000.0)
            self._raise_pending()
            return
        elif isinstance(frame, CallEnded):
            await self._finish()
        await self.emit(frame)
        self._raise_pending()

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _audio(self, frame: AudioIn) -> None:
        self._heard_audio = True
        if self._closing:
            return
        if not self._pending:
            self._pending_start_ms = frame.timestamp_ms
        self._pending.append(frame.pcm)
        self._pending_samples += len(frame.pcm)
        self._now_ms = frame.timestamp_ms + 1000.0 * len(frame.pcm) / self._rate
        if self._pending_samples >= self._chunk_samples:
            self._send_pending()

    def _send_pending(self) -> None:
        if not self._pending:
            return
        pcm = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        data = mulaw_encode_bytes(pcm) if self._encoding == "mulaw" else l16_encode(pcm)
        chunk = _Chunk(data, self._pending_start_ms, 1000.0 * len(pcm) / self._rate)
        self._pending = []
        self._pending_samples = 0
        self._maybe_restart()
        self._put(self._feed, chunk)
        if self._stream is not None:
            self._stream.fed_ms += chunk.ms
        else:
            self._open_stream()

    def _put(self, queue: asyncio.Queue[_Chunk | None], item: _Chunk | None) -> None:
        """Queue without waiting; when the stream is behind, the oldest audio goes."""
        while queue.qsize() >= self._feed_limit:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            self.dropped_chunks += 1
            if self.dropped_chunks == 1 or self.dropped_chunks % 50 == 0:
                self.log.warning("stt_audio_dropped", chunks=self.dropped_chunks)
        queue.put_nowait(item)

    # --- streams --------------------------------------------------------------------------
    def _maybe_restart(self) -> None:
        stream = self._stream
        if stream is None:
            return
        limit_ms = self.params.restart_after_s * 1000.0
        if stream.fed_ms < limit_ms:
            return
        if self._finals.speaking and stream.fed_ms < limit_ms + _HARD_RESTART_GRACE_S * 1000.0:
            return  # wait for the caller to pause, so no word is cut in two
        self.log.info("stt_stream_restart", stream=stream.number, audio_s=stream.fed_ms / 1000)
        self._end_stream(stream)

    def _end_stream(self, stream: _Stream) -> None:
        """No more audio for ``stream``: it sends what it has, then half-closes."""
        if stream.ended:
            return
        stream.ended = True
        if stream is self._stream:
            self._stream = None
            self._feed = asyncio.Queue()
        self._put(stream.feed, None)

    def _open_stream(self) -> None:
        if self._closing or self._client is None or self._now_ms < self._retry_at_ms:
            return
        self._opened += 1
        stream = _Stream(self._opened, self._feed)
        stream.fed_ms = self._feed.qsize() * float(self.params.chunk_ms)  # adopted backlog
        previous = self._last_task
        stream.task = asyncio.get_running_loop().create_task(
            self._run(stream, previous), name=f"{self.name}-stream-{stream.number}"
        )
        self._stream = stream
        self._streams.add(stream)
        self._last_task = stream.task
        self.log.debug("stt_stream_open", stream=stream.number)

    async def _requests(self, stream: _Stream) -> Any:
        yield self._config_request
        while True:
            chunk = await stream.feed.get()
            if chunk is None:
                return
            stream.sent.sent(chunk.start_ms, chunk.ms)
            if self.params.api_version == "v2":
                yield speech_v2.StreamingRecognizeRequest(audio=chunk.data)
            else:
                yield speech_v1.StreamingRecognizeRequest(audio_content=chunk.data)

    async def _run(self, stream: _Stream, previous: asyncio.Task[None] | None) -> None:
        deadline = self.params.restart_after_s + _HARD_RESTART_GRACE_S + _STREAM_DEADLINE_EXTRA_S
        try:
            responses = await self._client.streaming_recognize(
                requests=self._requests(stream), retry=None, timeout=deadline
            )
            async for response in responses:
                if not stream.responded:
                    stream.responded = True
                    self._failures = 0
                if previous is not None:
                    await self._wait_previous(previous)
                    previous = None
                await self._handle(stream, response)
            self.log.debug(
                "stt_stream_closed",
                stream=stream.number,
                finals=stream.finals,
                audio_s=round(stream.fed_ms / 1000, 2),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._stream_failed(stream, exc)
        finally:
            self._streams.discard(stream)
            if stream is self._stream:  # it ended on its own: the next audio opens another
                self._stream = None

    async def _wait_previous(self, previous: asyncio.Task[None]) -> None:
        """The previous stream's results come first; it gets ``final_wait_ms`` to finish."""
        if previous.done():
            return
        with contextlib.suppress(TimeoutError):
            await wait_for(
                self.ctx.clock, asyncio.wait([previous]), self.params.final_wait_ms / 1000.0
            )
        if not previous.done():
            previous.cancel()

    def _stream_failed(self, stream: _Stream, exc: Exception) -> None:
        # Note: when Google refuses a stream while audio is being written, the gRPC client may
        # report INTERNAL ("Internal error from Core") instead of Google's status (a write
        # racing the status); that maps to "unavailable", so the stream is simply reopened,
        # and the next refusal usually carries the real status (logged as stt_stream_failed).
        error = provider_error(self.name, PROVIDER, exc)
        if error.status == "OUT_OF_RANGE" and stream.fed_ms >= 60_000:
            # Google's own stream-length limit: just continue on a new stream.
            self.log.info("stt_stream_limit", stream=stream.number, error=error.provider_message)
            return
        if stream.responded or stream.fed_ms >= _HEALTHY_STREAM_MS:
            self._failures = 0
        self._failures += 1
        if not error.retryable:
            delay_ms = _PERMANENT_BACKOFF_MS
        elif self._failures == 1:
            delay_ms = 0.0
        else:
            delay_ms = min(_MAX_BACKOFF_MS, 500.0 * 2 ** (self._failures - 2))
        self._retry_at_ms = self._now_ms + delay_ms
        self.log.warning(
            "stt_stream_failed",
            stream=stream.number,
            kind=error.kind,
            status=error.status,
            failures=self._failures,
            retry_in_ms=round(delay_ms),
            error=error.provider_message[:200],
        )
        if self._failures == 1 and self._error is None:
            self._error = error  # raised from the next process(): one report per outage

    async def _handle(self, stream: _Stream, response: Any) -> None:
        p: GoogleSttParams = self.params
        event = getattr(response.speech_event_type, "name", "")
        if event == "END_OF_SINGLE_UTTERANCE":  # the server takes no more audio on this stream
            self._end_stream(stream)
        results = list(response.results)
        if not results:
            return
        v2 = p.api_version == "v2"
        finals = [r for r in results if r.is_final]
        self._heard(stream, finals or results, bool(finals), v2)
        if finals:
            stream.finals += 1
            stream.last_interim = ""
            self._unfinal = False
            if p.single_utterance and v2:
                self._end_stream(stream)
            text = _joined(finals)
            if not text:
                return
            last = finals[-1]
            end = last.result_end_offset if v2 else last.result_end_time
            confidence = float(last.alternatives[0].confidence) if last.alternatives else 0.0
            final = self._finals.final(
                text,
                confidence or None,
                stream.sent.stream_ms(_offset_ms(end)),
                now_ms=self._now_ms,
            )
            self._interim_text = ""
            if final is None:
                # The caller is still talking (by the VAD): show the words, decide later.
                held = self._finals
                await self.emit(Transcript(held.held_text, False, None, held.held_at_ms))
            else:
                await self._send_final(final)
        elif p.interim_results:
            text = _joined(results)
            if text and text != stream.last_interim:
                stream.last_interim = text
                self._unfinal = True
                end = results[-1].result_end_offset if v2 else results[-1].result_end_time
                shown = self._finals.with_held(text)
                self._interim_text, self._interim_ms = shown, self._now_ms
                at_ms = stream.sent.stream_ms(_offset_ms(end))
                await self.emit(Transcript(shown, False, None, at_ms))

    # --- early words for the VAD's end-of-turn decision ----------------------------------------
    def _heard(self, stream: _Stream, results: list[Any], final: bool, v2: bool) -> None:
        """Tell the pause tracker about a response: its words, how far it heard, and where its
        last word ends when Google says (word offsets, on finals only)."""
        last = results[-1]
        end = stream.sent.stream_ms(
            _offset_ms(last.result_end_offset if v2 else last.result_end_time)
        )
        words_end: float | None = None
        words = last.alternatives[0].words if last.alternatives else []
        if words:
            word_end = words[-1].end_offset if v2 else words[-1].end_time
            words_end = stream.sent.stream_ms(_offset_ms(word_end))
        key = f"{stream.number}"
        heard = Heard(key, _joined(results), final, end, words_end)
        self.pause_words.result(heard)

    async def _release(self) -> None:
        """Emit the held finals as the utterance's one final transcript (also when the wait
        for Google's last words ran out: the caller waited enough)."""
        await self._send_final(self._finals.release())

    async def _send_final(self, transcript: Transcript | None) -> None:
        if transcript is None:
            return
        self._final_wait.arrived()
        ended = self._speech_ended_at
        self.log.info(
            "stt_final",
            ms=round(1000 * (self.ctx.clock.now() - ended)) if ended is not None else None,
            chars=len(transcript.text),
        )
        self._speech_ended_at = None
        await self.emit(transcript)

    # --- ending ---------------------------------------------------------------------------
    async def _finish(self) -> None:
        """Call end: send the last audio, half-close, and let the last results out (bounded)."""
        self._send_pending()
        self._closing = True
        if self._stream is not None:
            self._end_stream(self._stream)
        tasks = [s.task for s in self._streams if s.task is not None and not s.task.done()]
        if tasks:
            with contextlib.suppress(TimeoutError):
                await wait_for(
                    self.ctx.clock, asyncio.wait(tasks), self.params.final_wait_ms / 1000
                )
        await self._release()
        if self.dropped_chunks:
            self.log.warning("stt_audio_dropped_total", chunks=self.dropped_chunks)

    async def stop(self) -> None:
        self._closing = True
        tasks = [s.task for s in self._streams if s.task is not None and not s.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._streams.clear()
        self._stream = None
        client, self._client = self._client, None
        await close_client(client)


def _joined(results: list[Any]) -> str:
    """One transcript from a response's results (an interim's stable and unstable parts)."""
    return "".join(r.alternatives[0].transcript for r in results if r.alternatives).strip()
