"""A fake Google Cloud on 127.0.0.1: a real ``grpc.aio`` server speaking the services' wire
protocol (the SDK's own request/response messages, serialized by the SDK's classes).

It implements Speech-to-Text v2 and v1 ``StreamingRecognize``, Text-to-Speech
``SynthesizeSpeech``, and Dialogflow CX / ES ``DetectIntent``; records every request (so tests
assert what the SDK sent), and fails on demand with a given gRPC status code.

The recogniser is a tiny endpointer: audio louder than a threshold is speech; at speech onset it
sends an interim result (the first word of the next scripted line), and after ``endpoint_ms`` of
silence the final result (the whole line), so results follow the audio deterministically.

Import it from a test module with ``sys.path`` (tests have no packages)::

    sys.path.insert(0, str(Path(__file__).parent))
    from google_fakes import FakeGoogle
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import numpy as np
from google.cloud import dialogflow_v2 as es
from google.cloud import dialogflowcx_v3 as cx
from google.cloud import speech_v1, speech_v2
from google.cloud import texttospeech_v1 as tts

from voicebridge.audio.mulaw import mulaw_decode, mulaw_encode_bytes

STT_V2 = "/google.cloud.speech.v2.Speech/StreamingRecognize"
STT_V1 = "/google.cloud.speech.v1.Speech/StreamingRecognize"
TTS = "/google.cloud.texttospeech.v1.TextToSpeech/SynthesizeSpeech"
CX = "/google.cloud.dialogflow.cx.v3.Sessions/DetectIntent"
ES = "/google.cloud.dialogflow.v2.Sessions/DetectIntent"

SPEECH_LEVEL = 500.0  # RMS above this is speech, for the fake endpointer


@dataclass
class SttStream:
    """What one StreamingRecognize call received."""

    method: str
    config: Any = None
    audio: bytearray = field(default_factory=bytearray)
    requests: int = 0
    half_closed: bool = False  # the client ended its requests (clean close)
    cancelled: bool = False
    failed: grpc.StatusCode | None = None  # the status it was failed with
    finals: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    after_ms: float = 0.0  # streams: fail after this much audio (0 = at once)


@dataclass(frozen=True)
class ScriptedResult:
    """A recognition result the fake sends once its stream has received ``after_ms`` of audio,
    timed as scripted (ms into the stream): ``end_ms`` is its ``result_end_offset`` (v1:
    ``result_end_time``); a final with ``words_end_ms`` carries word offsets, the last word
    ending there (Google gives word offsets on finals only)."""

    after_ms: float
    text: str
    final: bool
    end_ms: float
    words_end_ms: float | None = None


def wav_bytes(format_tag: int, rate: int, bits: int, data: bytes) -> bytes:
    """A minimal RIFF/WAVE file (PCM = 1, mu-law = 7), as Google returns for LINEAR16/MULAW."""
    block = bits // 8
    fmt = struct.pack("<HHIIHH", format_tag, 1, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tone(seconds: float, rate: int, level: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * 440.0 * t)).astype(np.int16)


def plain(text: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


# --- scripted agents ---------------------------------------------------------------------------


def cx_agent(request: cx.DetectIntentRequest) -> cx.DetectIntentResponse:
    """A small CX agent: welcome, echo, goodbye (end_interaction), human (live_agent_handoff),
    'transfer' (telephony_transfer_call), digits."""
    qi = request.query_input
    kind = cx.QueryInput.pb(qi).WhichOneof("input")
    messages: list[cx.ResponseMessage] = []

    def say(*texts: str) -> None:
        messages.append(cx.ResponseMessage(text=cx.ResponseMessage.Text(text=list(texts))))

    result = cx.QueryResult(language_code=qi.language_code)
    if kind in ("intent", "event"):
        say("Welcome to the test agent.", " How can I help?")
        if kind == "event":
            result.trigger_event = qi.event.event
    elif kind == "dtmf":
        result.dtmf = qi.dtmf
        say(f"You entered {' '.join(qi.dtmf.digits)}.")
    else:
        text = qi.text.text
        result.text = text
        lowered = text.lower()
        if "bye" in lowered:
            say("Goodbye.")
            messages.append(cx.ResponseMessage(end_interaction=cx.ResponseMessage.EndInteraction()))
        elif "human" in lowered:
            say("Connecting you to an agent.")
            messages.append(
                cx.ResponseMessage(live_agent_handoff=cx.ResponseMessage.LiveAgentHandoff())
            )
        elif "transfer" in lowered:
            say("Transferring you to billing.")
            messages.append(
                cx.ResponseMessage(
                    telephony_transfer_call=cx.ResponseMessage.TelephonyTransferCall(
                        phone_number="+15550199"
                    )
                )
            )
        elif "silent" in lowered:
            pass
        else:
            say(f"You said {text}. Anything else?")
    result.response_messages = messages
    return cx.DetectIntentResponse(response_id="r1", query_result=result)


def es_agent(request: es.DetectIntentRequest) -> es.DetectIntentResponse:
    """The same small agent, for Dialogflow ES."""
    qi = request.query_input
    kind = es.QueryInput.pb(qi).WhichOneof("input")
    result = es.QueryResult()
    texts: list[str] = []
    if kind == "event":
        result.language_code = qi.event.language_code
        texts = ["Welcome to the test agent. How can I help?"]
    else:
        text = qi.text.text
        result.query_text = text
        result.language_code = qi.text.language_code
        lowered = text.lower()
        if "bye" in lowered:
            texts = ["Goodbye."]
            result.intent = es.Intent(display_name="bye", end_interaction=True)
        elif "done" in lowered:
            texts = ["All done."]
            result.diagnostic_info = {"end_conversation": True}
        elif "human" in lowered:
            texts = ["Connecting you to an agent."]
            result.intent = es.Intent(display_name="human", live_agent_handoff=True)
        else:
            texts = [f"You said {text}."]
    result.fulfillment_text = " ".join(texts)
    result.fulfillment_messages = [
        es.Intent.Message(text=es.Intent.Message.Text(text=texts)),
        es.Intent.Message(
            text=es.Intent.Message.Text(text=["(for Slack only)"]),
            platform=es.Intent.Message.Platform.SLACK,
        ),
    ]
    return es.DetectIntentResponse(response_id="r1", query_result=result)


# --- the server --------------------------------------------------------------------------------


class FakeGoogle:
    """Start with ``async with FakeGoogle() as fake``; point stages at ``fake.endpoint``."""

    def __init__(self) -> None:
        self.server: Any = None
        self.port = 0
        self.requests: dict[str, list[Any]] = defaultdict(list)
        self.metadata: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.failures: dict[str, list[Failure]] = defaultdict(list)
        self.delay_s: dict[str, float] = defaultdict(float)
        self.cancelled: dict[str, int] = defaultdict(int)
        self.started: dict[str, int] = defaultdict(int)
        # speech
        self.stt_lines: list[str] = []
        self.stt_streams: list[SttStream] = []
        self.stream_ended = asyncio.Event()  # a recognition stream half-closed or was cancelled
        self.endpoint_ms = 300.0
        self._line = 0
        # With a script, the recogniser sends these results instead of following the audio;
        # it counts the audio it has answered for and the results it sent.
        self.stt_script: list[ScriptedResult] | None = None
        self.stt_heard_ms = 0.0
        self.stt_results_sent = 0
        # text-to-speech
        self.tts_ms_per_char = 20
        self.tts_wav_header = True
        # dialogflow
        self.cx_agent: Callable[[cx.DetectIntentRequest], cx.DetectIntentResponse] = cx_agent
        self.es_agent: Callable[[es.DetectIntentRequest], es.DetectIntentResponse] = es_agent

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def fail(
        self,
        method: str,
        code: grpc.StatusCode,
        message: str = "",
        *,
        times: int = 1,
        after_ms: float = 0.0,
    ) -> None:
        """The next ``times`` calls of ``method`` fail with ``code``."""
        text = message or f"injected {code.name}"
        self.failures[method].extend(Failure(code, text, after_ms) for _ in range(times))

    async def __aenter__(self) -> FakeGoogle:
        self.server = grpc.aio.server()
        handlers = {
            "google.cloud.speech.v2.Speech": {
                "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
                    self._stt_v2,
                    request_deserializer=speech_v2.StreamingRecognizeRequest.deserialize,
                    response_serializer=speech_v2.StreamingRecognizeResponse.serialize,
                )
            },
            "google.cloud.speech.v1.Speech": {
                "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
                    self._stt_v1,
                    request_deserializer=speech_v1.StreamingRecognizeRequest.deserialize,
                    response_serializer=speech_v1.StreamingRecognizeResponse.serialize,
                )
            },
            "google.cloud.texttospeech.v1.TextToSpeech": {
                "SynthesizeSpeech": grpc.unary_unary_rpc_method_handler(
                    self._tts,
                    request_deserializer=tts.SynthesizeSpeechRequest.deserialize,
                    response_serializer=tts.SynthesizeSpeechResponse.serialize,
                )
            },
            "google.cloud.dialogflow.cx.v3.Sessions": {
                "DetectIntent": grpc.unary_unary_rpc_method_handler(
                    self._cx,
                    request_deserializer=cx.DetectIntentRequest.deserialize,
                    response_serializer=cx.DetectIntentResponse.serialize,
                )
            },
            "google.cloud.dialogflow.v2.Sessions": {
                "DetectIntent": grpc.unary_unary_rpc_method_handler(
                    self._es,
                    request_deserializer=es.DetectIntentRequest.deserialize,
                    response_serializer=es.DetectIntentResponse.serialize,
                )
            },
        }
        self.server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(name, methods)
                for name, methods in handlers.items()
            ]
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(grace=None)

    # --- shared -------------------------------------------------------------------------------
    def _begin(self, method: str, context: Any) -> Failure | None:
        self.started[method] += 1
        self.metadata[method].append(
            {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        )
        queue = self.failures[method]
        return queue.pop(0) if queue else None

    async def _unary(
        self, method: str, request: Any, context: Any, answer: Callable[[Any], Any]
    ) -> Any:
        self.requests[method].append(request)
        failure = self._begin(method, context)
        try:
            if self.delay_s[method]:
                await asyncio.sleep(self.delay_s[method])
        except asyncio.CancelledError:
            self.cancelled[method] += 1
            raise
        if failure is not None:
            await context.abort(failure.code, failure.message)
        return answer(request)

    # --- text-to-speech -----------------------------------------------------------------------
    async def _tts(self, request: tts.SynthesizeSpeechRequest, context: Any) -> Any:
        return await self._unary(TTS, request, context, self._synthesize)

    def _synthesize(self, request: tts.SynthesizeSpeechRequest) -> tts.SynthesizeSpeechResponse:
        text = request.input.text or plain(request.input.ssml)
        rate = request.audio_config.sample_rate_hertz or 24000
        pcm = tone(self.tts_ms_per_char * len(text) / 1000.0, rate)
        encoding = request.audio_config.audio_encoding
        if encoding == tts.AudioEncoding.MULAW:
            data, tag, bits = mulaw_encode_bytes(pcm), 7, 8
        else:
            data, tag, bits = pcm.astype("<i2").tobytes(), 1, 16
        content = wav_bytes(tag, rate, bits, data) if self.tts_wav_header else data
        return tts.SynthesizeSpeechResponse(audio_content=content)

    # --- dialogflow ---------------------------------------------------------------------------
    async def _cx(self, request: cx.DetectIntentRequest, context: Any) -> Any:
        return await self._unary(CX, request, context, self.cx_agent)

    async def _es(self, request: es.DetectIntentRequest, context: Any) -> Any:
        return await self._unary(ES, request, context, self.es_agent)

    # --- speech-to-text -----------------------------------------------------------------------
    async def _stt_v2(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for response in self._stt(STT_V2, requests, context):
            yield response

    async def _stt_v1(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for response in self._stt(STT_V1, requests, context):
            yield response

    def _next_line(self) -> str:
        line = self.stt_lines[self._line] if self._line < len(self.stt_lines) else "something"
        self._line += 1
        return line

    async def _stt(
        self, method: str, requests: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        v2 = method == STT_V2
        stream = SttStream(method)
        self.stt_streams.append(stream)
        failure = self._begin(method, context)
        mulaw = False
        rate = 8000
        interim = True
        single = False
        speaking = False
        silence_ms = 0.0
        audio_ms = 0.0
        line = ""
        try:
            async for request in requests:
                stream.requests += 1
                self.requests[method].append(request)
                if stream.config is None:
                    stream.config = request
                    if v2:
                        config = request.streaming_config.config.explicit_decoding_config
                        mulaw = config.encoding.name == "MULAW"
                        rate = config.sample_rate_hertz
                        interim = request.streaming_config.streaming_features.interim_results
                    else:
                        config = request.streaming_config.config
                        mulaw = config.encoding.name == "MULAW"
                        rate = config.sample_rate_hertz
                        interim = request.streaming_config.interim_results
                        single = request.streaming_config.single_utterance
                    if failure is not None and not failure.after_ms:
                        # Google reads the configuration, then refuses the stream.
                        stream.failed = failure.code
                        await context.abort(failure.code, failure.message)
                    continue
                data = request.audio if v2 else request.audio_content
                stream.audio.extend(data)
                pcm = mulaw_decode(data) if mulaw else np.frombuffer(data, "<i2")
                ms = 1000.0 * len(pcm) / rate
                audio_ms += ms
                if failure is not None and audio_ms >= failure.after_ms:
                    stream.failed = failure.code
                    await context.abort(failure.code, failure.message)
                if self.stt_script is not None:
                    while self.stt_script and self.stt_script[0].after_ms <= audio_ms:
                        self.stt_results_sent += 1
                        yield self._scripted(v2, self.stt_script.pop(0))
                    self.stt_heard_ms += ms
                    continue
                loud = pcm.size and np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > SPEECH_LEVEL
                if loud:
                    silence_ms = 0.0
                    if not speaking:
                        speaking = True
                        line = self._next_line()
                        if interim:
                            yield self._result(v2, line.split()[0], False, audio_ms)
                elif speaking:
                    silence_ms += ms
                    if silence_ms >= self.endpoint_ms:
                        speaking = False
                        if single and not v2:
                            yield speech_v1.StreamingRecognizeResponse(
                                speech_event_type=speech_v1.StreamingRecognizeResponse.SpeechEventType.END_OF_SINGLE_UTTERANCE
                            )
                        stream.finals.append(line)
                        yield self._result(v2, line, True, audio_ms - silence_ms)
                        if single and not v2:
                            return
            # The requests also end when the client cancels; a cancellation lands here.
            await asyncio.sleep(0.02)
            stream.half_closed = True
            self.stream_ended.set()
            if speaking:  # Google finalizes what it heard when the client half-closes
                stream.finals.append(line)
                yield self._result(v2, line, True, audio_ms)
        except asyncio.CancelledError:
            stream.cancelled = True
            self.cancelled[method] += 1
            self.stream_ended.set()
            raise

    async def all_streams_ended(self, timeout_s: float = 10.0) -> None:
        """Wait until every recognition stream so far was half-closed or cancelled by the
        client (its end reaches this server a moment after the call ended)."""

        async def ended() -> None:
            while not all(s.half_closed or s.cancelled for s in self.stt_streams):
                self.stream_ended.clear()
                await self.stream_ended.wait()

        await asyncio.wait_for(ended(), timeout_s)

    @staticmethod
    def _scripted(v2: bool, scripted: ScriptedResult) -> Any:
        response = FakeGoogle._result(v2, scripted.text, scripted.final, scripted.end_ms)
        if scripted.final and scripted.words_end_ms is not None:
            end = timedelta(milliseconds=scripted.words_end_ms)
            alternative = response.results[0].alternatives[0]
            for word in scripted.text.split():
                if v2:
                    alternative.words.append(speech_v2.WordInfo(word=word, end_offset=end))
                else:
                    alternative.words.append(speech_v1.WordInfo(word=word, end_time=end))
        return response

    @staticmethod
    def _result(v2: bool, text: str, final: bool, end_ms: float) -> Any:
        end = timedelta(milliseconds=end_ms)
        if v2:
            return speech_v2.StreamingRecognizeResponse(
                results=[
                    speech_v2.StreamingRecognitionResult(
                        alternatives=[
                            speech_v2.SpeechRecognitionAlternative(
                                transcript=text, confidence=0.91 if final else 0.0
                            )
                        ],
                        is_final=final,
                        stability=0.0 if final else 0.5,
                        result_end_offset=end,
                    )
                ]
            )
        return speech_v1.StreamingRecognizeResponse(
            results=[
                speech_v1.StreamingRecognitionResult(
                    alternatives=[
                        speech_v1.SpeechRecognitionAlternative(
                            transcript=text, confidence=0.91 if final else 0.0
                        )
                    ],
                    is_final=final,
                    stability=0.0 if final else 0.5,
                    result_end_time=end,
                )
            ]
        )


# --- driving stages ----------------------------------------------------------------------------


def audio_frames(segments: list[tuple[str, float]], rate: int, start_ms: float = 0.0) -> list[Any]:
    """20 ms ``AudioIn`` frames: ("speech", s) is a voiced speech-like signal, ("silence", s)
    digital silence; timestamps run on from ``start_ms``."""
    from voicebridge.frames import AudioIn
    from voicebridge.sim.signals import speech_like

    frames: list[Any] = []
    step = rate // 50
    t = start_ms
    for kind, seconds in segments:
        pcm = (
            speech_like(seconds, rate)
            if kind == "speech"
            else np.zeros(round(seconds * rate), np.int16)
        )
        for offset in range(0, len(pcm) - step + 1, step):
            frames.append(AudioIn(pcm[offset : offset + step], t))
            t += 20.0
    return frames


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (real time) for ``predicate``; fail the test if it never holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class Driven:
    """A pipeline of stages on a virtual clock that also records provider errors (which
    ``run_stages`` leaves to the session), for tests that need to act mid-call::

        async with Driven([stage], info) as run:
            await run.push(frame)
            run.pipeline.interrupt()
    """

    def __init__(self, stages: list[Any], info: Any = None) -> None:
        from voicebridge.call.context import CallContext, CallInfo
        from voicebridge.clock import VirtualClock
        from voicebridge.runtime.pipeline import Pipeline

        self.info = info or CallInfo(call_id="call-1", stream_id="stream-1")
        self.clock = VirtualClock()
        self.ctx = CallContext(self.info, clock=self.clock)
        self.frames: list[Any] = []
        self.errors: list[BaseException] = []
        self.provider_errors: list[Any] = []

        async def sink(frame: Any) -> None:
            self.frames.append(frame)

        self.pipeline = Pipeline(
            stages,
            self.ctx,
            sink,
            on_error=lambda stage, exc: self.errors.append(exc),
            on_provider_error=lambda stage, exc: self.provider_errors.append(exc),
        )

    async def __aenter__(self) -> Driven:
        from voicebridge.testing.harness import call_started

        await self.pipeline.start()
        await self.pipeline.push(call_started(self.info))
        await self.clock.settle()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pipeline.stop()

    async def push(self, *frames: Any) -> None:
        for frame in frames:
            await self.pipeline.push(frame)
            await self.clock.settle()

    async def advance(self, seconds: float) -> None:
        await self.clock.advance(seconds, step=0.01)

    async def drain(self) -> None:
        await self.clock.settle()
        await self.run_out_backoffs()
        await self.pipeline.drain()

    async def run_out_backoffs(self, limit_s: float = 5.0) -> None:
        """Retry backoffs sleep on the call's (virtual) clock: move it on while a stage waits
        only for time, and wait real time while one waits for the fake's answer."""
        deadline = time.monotonic() + limit_s
        runners = self.pipeline._runners
        while time.monotonic() < deadline:
            sleeping = [r for r in runners if r.busy and r.task in self.clock.sleeping]
            if sleeping:
                await self.clock.advance(0.05)
                continue
            if not any(r.busy or not r.queue.empty() for r in runners):
                return
            await asyncio.sleep(0.002)

    def of(self, kind: type) -> list[Any]:
        return [f for f in self.frames if isinstance(f, kind)]

    async def push_in_lockstep(
        self, frames: list[Any], fake: FakeGoogle, bytes_per_frame: int, every: int = 5
    ) -> None:
        """Push audio as a live call would: after each ``every`` frames, wait until the fake
        recogniser has that audio and its answers are back, so results arrive at the audio
        time they belong to instead of after the whole (virtual-time) call."""

        def received() -> int:
            return sum(len(s.audio) for s in fake.stt_streams)

        for index, frame in enumerate(frames, 1):
            await self.push(frame)
            if index % every == 0:
                sent = index * bytes_per_frame
                await until(lambda: received() >= sent)  # noqa: B023 (awaited right here)
                await asyncio.sleep(0.005)

    async def push_paced(self, frames: list[Any], every: int = 5, pause_s: float = 0.01) -> None:
        """Push audio at a steady real-time pace (100 ms of audio per 10 ms by default), so a
        provider's answers (and failures) land near the audio they belong to."""
        for start in range(0, len(frames), every):
            await self.push(*frames[start : start + every])
            await asyncio.sleep(pause_s)
