"""Test helpers: drive one stage or a chain of stages with frames on a virtual clock.

The one way to test a stage, built-in or custom::

    out = await run_stages([Vad()], frames, info=CallInfo(sample_rate=8000))
    assert any(isinstance(f, SpeechStarted) for f in out.frames)
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from voicebridge.call.context import CallContext, CallInfo
from voicebridge.clock import VirtualClock
from voicebridge.frames import (
    AgentAudio,
    AgentText,
    AudioIn,
    CallStarted,
    Frame,
    Hangup,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    Transcript,
    Transfer,
)
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.stage import Stage, StageParams
from voicebridge.stages.end_of_turn.words import EarlyWords


@dataclass
class StageRun:
    """What came out of the stages, and the context they ran in."""

    frames: list[Frame] = field(default_factory=list)
    ctx: CallContext | None = None
    errors: list[BaseException] = field(default_factory=list)

    def of(self, kind: type[Frame]) -> list[Frame]:
        return [f for f in self.frames if isinstance(f, kind)]

    def of_text(self) -> list[AgentText]:
        """The agent's reply pieces, in order."""
        return [f for f in self.frames if isinstance(f, AgentText)]


def call_started(info: CallInfo) -> CallStarted:
    """The ``CallStarted`` frame a session would push first for this call."""
    return info.started()


async def run_stages(
    stages: Sequence[Stage],
    frames: Iterable[Frame],
    *,
    info: CallInfo | None = None,
    clock: VirtualClock | None = None,
    start_call: bool = True,
    frame_interval_s: float = 0.0,
    settle_s: float = 0.0,
    drain_timeout_s: float = 5.0,
) -> StageRun:
    """Run frames through ``stages`` as a pipeline and collect what comes out of the last one.

    ``frame_interval_s`` moves the virtual clock between input frames (0.02 for live audio);
    ``settle_s`` lets time pass at the end so timers (silence windows, timeouts) can fire.
    ``drain_timeout_s`` bounds, in real time, how long each stage may take to finish its work
    at the end (a model on a busy machine may need more than the default).
    """
    info = info or CallInfo(call_id="test-call", stream_id="test-stream")
    clock = clock or VirtualClock()
    ctx = CallContext(info, clock=clock)
    run = StageRun(ctx=ctx)

    async def sink(frame: Frame) -> None:
        run.frames.append(frame)

    pipeline = Pipeline(list(stages), ctx, sink, on_error=lambda stage, exc: run.errors.append(exc))
    await pipeline.start()
    try:
        if start_call:
            await pipeline.push(call_started(info))
        for frame in frames:
            await pipeline.push(frame)
            if frame_interval_s:
                await clock.advance(frame_interval_s)
            else:
                await clock.settle()
        await clock.settle()
        if settle_s:
            await clock.advance(settle_s, step=0.01)
        await pipeline.drain(drain_timeout_s)
    finally:
        await pipeline.stop()
    return run


def start_message(
    call_id: str,
    stream_id: str | None = None,
    *,
    encoding: str = "audio/x-l16",
    rate: int = 8000,
    account_id: str = "MA-test",
    extra_headers: str = "{}",
) -> str:
    """A Plivo ``start`` event as it comes off the wire (``stream_id`` defaults to
    ``stream-<call_id>``)."""
    return json.dumps(
        {
            "sequenceNumber": 0,
            "event": "start",
            "start": {
                "callId": call_id,
                "streamId": stream_id if stream_id is not None else f"stream-{call_id}",
                "accountId": account_id,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": encoding, "sampleRate": rate},
            },
            "extra_headers": extra_headers,
        }
    )


class _Wire:
    """A transport that keeps what the session sent, for the harness to play out."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed is None:
            self.closed = (code, reason)


@dataclass
class WireMessage:
    t: float
    message: dict[str, Any]


class CallHarness:
    """A whole call without sockets: a ``Session`` fed 20 ms media frames on its own stream
    clock, with Plivo's playout buffer modelled (acks after the audio played, clears dropping
    the buffer). After each frame it waits until the pipeline is idle, so time is exact::

        async with CallHarness(spec) as call:
            await call.speak(speech_like(1.0, 8000))
            await call.idle(3.0)
            assert call.events("clearAudio") == []
    """

    def __init__(
        self,
        spec: Any,
        *,
        encoding: str = "audio/x-l16",
        rate: int = 8000,
        call_control: Any = None,
        stage_factory: Any = None,
        ack: bool = True,
    ) -> None:
        from voicebridge.clock import StreamClock
        from voicebridge.session import Session
        from voicebridge.sim.playout import PlayoutModel

        self.rate = rate
        self.encoding = encoding
        self.wire = _Wire()
        self.clock = StreamClock()
        self.session = Session(
            spec,
            self.wire,
            clock=self.clock,
            record_events=True,
            call_control=call_control,
            stage_factory=stage_factory,
        )
        self.playout = PlayoutModel(rate)
        self.ack = ack  # False: Plivo never acknowledges (lost acks)
        self.log: list[WireMessage] = []  # everything the agent sent, stamped with stream time
        self.acks_sent: list[WireMessage] = []
        self._stall: tuple[Callable[[], bool], asyncio.Event] | None = None  # see stall_when
        self._seen = 0
        self._t = 0.0
        from voicebridge.audio.codec import codec_for

        self._codec = codec_for(encoding)

    async def __aenter__(self) -> CallHarness:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.end("test over")

    @property
    def t(self) -> float:
        return self._t

    async def start(self) -> None:
        start = start_message(
            "harness-call", "harness-stream", encoding=self.encoding, rate=self.rate
        )
        await self.session.handle_message(start)
        await self._settle()
        await self._drain_wire()

    async def send(self, message: dict[str, Any]) -> None:
        """Send any Plivo event (dtmf, a stray ack...) at the current time."""
        await self.session.handle_message(json.dumps(message))
        await self._settle()
        await self._drain_wire()

    async def frame(self, pcm: Any = None) -> None:
        """One 20 ms media frame of caller audio (silence by default)."""
        import numpy as np

        step = self.rate // 50
        if pcm is None:
            pcm = np.zeros(step, np.int16)
        payload = base64.b64encode(self._codec.encode(pcm)).decode("ascii")
        await self.session.handle_message(
            json.dumps({"event": "media", "media": {"track": "inbound", "payload": payload}})
        )
        self._t += 0.02
        await self._settle()
        await self._drain_wire()
        for name in self.playout.advance(self._t):
            await self._ack(name)

    async def speak(self, pcm: Any) -> None:
        """Stream caller audio, frame by frame."""
        import numpy as np

        step = self.rate // 50
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            if len(chunk) < step:
                chunk = np.pad(chunk, (0, step - len(chunk)))
            await self.frame(chunk)
            if self.session.ended.is_set():
                return

    async def idle(self, seconds: float) -> None:
        """Caller silence for ``seconds``."""
        for _ in range(round(seconds / 0.02)):
            await self.frame()
            if self.session.ended.is_set():
                return

    async def until(self, predicate: Any, limit_s: float = 30.0) -> None:
        """Silence until ``predicate()`` holds (or ``limit_s`` passes)."""
        for _ in range(round(limit_s / 0.02)):
            if predicate() or self.session.ended.is_set():
                return
            await self.frame()

    def events(self, name: str) -> list[WireMessage]:
        return [m for m in self.log if m.message.get("event") == name]

    def timeline(self, kind: str) -> list[dict[str, Any]]:
        """The call's events of one ``kind`` (``CallEvent.kind``), in their JSON form."""
        timeline = self.session.timeline
        return [e.as_dict() for e in timeline.events if e.kind == kind] if timeline else []

    def stall_when(self, held: Callable[[], bool], changed: asyncio.Event) -> None:
        """A wire fake deliberately holds a provider request while ``held()``; ``changed`` is
        set whenever that may have changed. The harness then lets call time run on although a
        stage is waiting on the network."""
        self._stall = (held, changed)

    async def _settle(self) -> None:
        """Wait until the call is at rest: every stage idle or asleep on the call's clock (or
        held by a stalled fake), or the call over. Event-driven: nothing here polls."""
        session = self.session
        pipeline = session.pipeline
        await asyncio.sleep(0)
        if pipeline is None or session.ended.is_set() or pipeline.idle:
            return
        waits: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(pipeline.wait_idle()),
            asyncio.ensure_future(session.ended.wait()),
        ]
        if self._stall is not None:
            waits.append(asyncio.ensure_future(_until(*self._stall)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _drain_wire(self) -> None:
        while self._seen < len(self.wire.sent):
            message = self.wire.sent[self._seen]
            self._seen += 1
            event = message.get("event")
            logged = message
            if event == "playAudio":
                media = message["media"]
                pcm = self._codec.decode(base64.b64decode(media["payload"]))
                self.playout.play(pcm, self._t)
                logged = {**message, "media": {**media, "samples": len(pcm)}}
                logged["media"].pop("payload", None)
            self.log.append(WireMessage(round(self._t, 3), logged))
            if event == "checkpoint":
                for name in self.playout.checkpoint(message["name"], self._t):
                    await self._ack(name)
            elif event == "clearAudio":
                self.playout.clear(self._t)
                await self.session.handle_message(
                    json.dumps({"event": "clearedAudio", "streamId": "harness-stream"})
                )

    async def _ack(self, name: str) -> None:
        if not self.ack:
            return
        message = {"event": "playedStream", "streamId": "harness-stream", "name": name}
        self.acks_sent.append(WireMessage(round(self._t, 3), message))
        await self.session.handle_message(json.dumps(message))
        await self._settle()
        await self._drain_wire()


async def _until(held: Callable[[], bool], changed: asyncio.Event) -> None:
    while not held():
        changed.clear()
        await changed.wait()


# --- deterministic stand-ins for model stages, usable from YAML as voicebridge.testing:Name ---


class ToneSpeaker(Stage):
    """A speaker whose timing is exact: each character of a word is ``ms_per_char`` of tone and
    each gap between words as long in silence, so which words played is known to the sample.

    ``ms_per_word`` makes every word that long whatever its length (speech whose pace is not
    even in characters, which the ledger can only follow with timings); ``word_timings`` has it
    report each word's end, as Piper and cloud speech marks do."""

    type_name = "tone_speaker"
    role = "tts"
    passthrough = (AudioIn,)  # caller audio goes around this stage
    description = "Test speaker: a tone per character, silence between words."

    class Params(StageParams):
        ms_per_char: int = 50
        ms_per_word: int | None = None
        level: int = 3000
        word_timings: bool = False

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AgentText):
            import numpy as np

            p = self.params
            rate = self.ctx.info.sample_rate
            per_char = rate * p.ms_per_char // 1000
            parts = []
            ends: list[float] = []
            samples = 0
            for word in frame.text.split():
                length = rate * p.ms_per_word // 1000 if p.ms_per_word else per_char * len(word)
                parts.append(np.full(length, p.level, np.int16))
                parts.append(np.zeros(per_char, np.int16))
                ends.append(1000.0 * (samples + length) / rate)
                samples += length + per_char
            pcm = np.concatenate(parts) if parts else np.zeros(per_char, np.int16)
            await self.emit(
                AgentAudio(
                    pcm,
                    turn=frame.turn,
                    text=frame.text,
                    last=frame.last,
                    word_ends_ms=tuple(ends) if p.word_timings and ends else None,
                )
            )
            return
        await self.emit(frame)


class ScriptedStt(Stage):
    """A transcriber that says, for each utterance the VAD ends, the next line of its script
    (an empty line means the utterance yielded no words, like a cough). With ``pause_words``
    it also publishes, at each pause the VAD reports, the next of those as the words heard so
    far, as whisper's speculative run does (for the VAD's end-of-turn text cues)."""

    type_name = "scripted_stt"
    role = "stt"
    description = "Test transcriber: the next scripted line at each end of speech."

    class Params(StageParams):
        lines: list[str] = []
        interim: bool = False  # also emit each line as an interim result at speech onset
        pause_words: list[str] = []

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._next = 0
        self._current = ""
        self._pauses = 0

    async def start(self) -> None:
        if self.params.pause_words:
            EarlyWords.of(self.ctx).announce()

    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        if isinstance(frame, SpeechStarted):
            lines = self.params.lines
            self._current = lines[self._next] if self._next < len(lines) else ""
            self._next += 1
            if self.params.interim and self._current:
                await self.emit(Transcript(self._current, final=False, at_ms=frame.at_ms))
        elif isinstance(frame, SpeechPaused) and self.params.pause_words:
            words = self.params.pause_words
            text = words[self._pauses] if self._pauses < len(words) else ""
            self._pauses += 1
            EarlyWords.of(self.ctx).publish(frame.at_ms, text)
        elif isinstance(frame, SpeechEnded) and self._current:
            await self.emit(Transcript(self._current, final=True, at_ms=frame.at_ms))


class ScriptedDialogue(Stage):
    """A dialogue that answers every final transcript with ``reply`` (sentence by sentence,
    ``think_s`` of virtual time before each, like a streaming LLM), greets with ``greeting``, and
    keeps the history it was shown each time, for assertions."""

    type_name = "scripted_dialogue"
    role = "dialogue"
    passthrough = (AudioIn,)  # caller audio goes around this stage
    description = "Test dialogue: a fixed reply, paced like an LLM; records the history it saw."

    class Params(StageParams):
        greeting: str = ""
        reply: str = "I see."
        think_s: float = 0.0
        hangup_on: str = "goodbye"
        transfer_on: str = "transfer me"
        transfer_to: str = "+15550100"

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.seen: list[list[tuple[str, str, bool]]] = []

    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        if isinstance(frame, CallStarted) and self.params.greeting and not frame.resumed:
            await self._say(self.params.greeting)
        elif isinstance(frame, Transcript) and frame.final:
            self.seen.append([(h.role, h.text, h.interrupted) for h in self.ctx.history])
            text = frame.text.lower()
            if self.params.hangup_on and self.params.hangup_on in text:
                await self._say("Goodbye.")
                await self.emit(Hangup(reason="dialogue"))
            elif self.params.transfer_on and self.params.transfer_on in text:
                await self._say("Transferring you now.")
                await self.emit(Transfer(to=self.params.transfer_to))
            else:
                await self._say(self.params.reply)

    async def _say(self, text: str) -> None:
        from voicebridge.text import split_sentences

        pieces = split_sentences(text)
        turn = self.begin_turn()
        for index, piece in enumerate(pieces):
            if self.params.think_s:
                await self.ctx.clock.sleep(self.params.think_s)
            await self.emit(AgentText(piece, turn=turn, last=index == len(pieces) - 1))


class FailingDialogue(Stage):
    """A dialogue whose provider is down whenever the caller says "fail"; else it echoes."""

    type_name = "failing_dialogue"
    role = "dialogue"
    passthrough = (AudioIn,)  # caller audio goes around this stage
    description = "Test dialogue: raises a ProviderError on 'fail', echoes otherwise."

    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        if isinstance(frame, Transcript) and frame.final:
            from voicebridge.runtime.providers import ProviderError

            if "fail" in frame.text.lower():
                raise ProviderError(self.name, "fake-llm", "unavailable", "503 upstream down")
            turn = self.begin_turn()
            await self.emit(AgentText(f"You said {frame.text}.", turn=turn, last=True))
