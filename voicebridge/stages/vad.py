"""The ``vad`` stage: finds where the caller's speech starts and where their turn ends.

Speech must last ``min_speech_ms`` before it counts (clicks and coughs do not). The utterance
handed downstream starts ``pre_roll_ms`` before the detected onset so the first syllable is not
lost. Caller audio is passed on unchanged for streaming transcribers.

Where the turn ends is :class:`~voicebridge.stages.end_of_turn.policy.EndOfTurnPolicy`'s call:
after ``min_silence_ms`` of silence (``end_of_turn: silence``, the default), or, with
``end_of_turn: {text_cues: true}``, as soon as the transcriber's words at a short pause read as a
finished sentence, and up to ``max_silence_ms`` later when they read as one that goes on. The
smart-turn audio model is an opt-in second opinion; it runs in a worker pool, and its verdict,
like the words, ends the utterance the moment it arrives, between audio frames.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import webrtcvad
from pydantic import Field, model_validator

from voicebridge.audio.frames import FrameSplitter, samples_for_ms
from voicebridge.frames import (
    PCM,
    AudioIn,
    CallStarted,
    Frame,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
)
from voicebridge.runtime.flow import StageFlow
from voicebridge.runtime.stage import Stage, StageError, StageParams
from voicebridge.runtime.workers import WorkerPoolFull, run_blocking
from voicebridge.stages.end_of_turn.policy import (
    EndOfTurnPolicy,
    EndOfTurnSettings,
    EndTurn,
    StartCheck,
)
from voicebridge.stages.end_of_turn.words import EarlyWords
from voicebridge.stages.offline_models import OfflineModelError

_POOL_QUEUE = 64


class EndOfTurnParams(StageParams):
    text_cues: bool = Field(
        False,
        description="judge the transcriber's words before a pause: a sentence that ends there "
        "ends the turn at check_ms, one that goes on waits up to max_silence_ms",
    )
    model: Literal["none", "smart-turn"] = Field(
        "none", description="an audio model asked at check_ms: none, or smart-turn (opt-in)"
    )
    check_ms: int = Field(200, ge=20, le=2000, description="silence before a verdict may end it")
    max_silence_ms: int = Field(
        1500, ge=100, le=10000, description="an unfinished turn ends after this much silence"
    )
    digit_lengths: list[int] = Field(
        default_factory=list,
        description="digit strings of these lengths are complete; others wait for more digits",
    )
    full_stop_ms: int = Field(
        0,
        ge=0,
        le=10000,
        description="words that end in a plain full stop end the turn no sooner than this",
    )
    words_wait_ms: int = Field(
        800, ge=0, le=10000, description="after check_ms, how long to wait for late words"
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="smart-turn: P(complete) that ends it")
    model_path: Path | None = Field(
        None, description="a smart-turn v3 ONNX file (default: the one in the pipecat-ai wheel)"
    )
    threads: int = Field(1, ge=1, le=16, description="onnxruntime threads per check")
    workers: int = Field(2, ge=1, le=32, description="checks run in parallel, per process")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """``silence`` (the silence timer alone), ``text`` and ``smart-turn`` name the usual
        choices; ``model: silence`` is ``model: none``."""
        if isinstance(value, str):
            presets: dict[str, dict[str, Any]] = {
                "silence": {},
                "text": {"text_cues": True},
                "smart-turn": {"model": "smart-turn"},
            }
            if value not in presets:
                raise ValueError(f"end_of_turn must be one of {sorted(presets)} or a mapping")
            return presets[value]
        if isinstance(value, dict) and value.get("model") == "silence":
            return {**value, "model": "none"}
        return value


class Scorer(Protocol):
    """The verdict source: P(the turn is complete) for an utterance so far."""

    async def __call__(self, pcm: PCM, rate: int) -> float: ...


class SmartTurnScorer:
    """The smart-turn model, run in the process-wide ``end-of-turn`` worker pool."""

    def __init__(self, params: EndOfTurnParams) -> None:
        from voicebridge.stages.end_of_turn import smart_turn  # onnxruntime: only when used

        self._smart_turn = smart_turn
        self._params = params
        try:
            self._model = smart_turn.load_model(params.model_path, threads=params.threads)
        except (OfflineModelError, FileNotFoundError, ValueError) as exc:
            raise StageError(f"vad: end_of_turn: {exc}") from exc

    async def __call__(self, pcm: PCM, rate: int) -> float:
        return await run_blocking(
            self._smart_turn.POOL_NAME,
            self._model.probability,
            pcm,
            rate,
            max_workers=self._params.workers,
            max_queue=_POOL_QUEUE,
        )


class VadParams(StageParams):
    aggressiveness: int = Field(
        2, ge=0, le=3, description="0 = least, 3 = most eager to call noise"
    )
    frame_ms: Literal[10, 20, 30] = Field(20, description="analysis frame; WebRTC takes 10/20/30")
    min_speech_ms: int = Field(120, ge=0, description="speech shorter than this is ignored")
    min_silence_ms: int = Field(600, ge=0, description="silence that ends an utterance")
    pre_roll_ms: int = Field(240, ge=0, description="audio kept from before the onset")
    max_utterance_ms: int = Field(30000, ge=1000, description="an utterance is cut at this length")
    pause_ms: int = Field(
        0, ge=0, description="silence that signals a possible end early (0 = off)"
    )
    forward_audio: bool = Field(True, description="pass caller audio on to later stages")
    end_of_turn: EndOfTurnParams = Field(
        default_factory=EndOfTurnParams,
        description="what ends the caller's turn: silence, text or smart-turn (docs/turns.md)",
    )

    @model_validator(mode="after")
    def _words_need_a_pause(self) -> VadParams:
        """Text cues read the words transcribed at the pause signal: without one, every turn
        would wait ``words_wait_ms`` for words that never come."""
        if self.end_of_turn.text_cues and self.pause_ms == 0:
            raise ValueError(
                "end_of_turn.text_cues needs pause_ms > 0 (the transcriber transcribes the "
                "utterance so far at that pause); set pause_ms: 200"
            )
        return self


class Vad(Stage):
    type_name = "vad"
    role = "vad"
    inline = True  # pure computation: called directly, no queue or task of its own
    description = (
        "Detects caller speech onset with WebRTC VAD (keeps a pre-roll) and the end of the "
        "caller's turn: a silence timer, the transcriber's words at a short pause, or the "
        "smart-turn model."
    )
    Params = VadParams

    @classmethod
    def frame_flow(cls, params: StageParams) -> StageFlow | None:
        flow = super().frame_flow(params)
        if flow is None or not isinstance(params, VadParams) or params.forward_audio:
            return flow
        return replace(flow, drops=(AudioIn,), drop_hint="set its `forward_audio: true`")

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: VadParams = self.params
        self._vad = webrtcvad.Vad(p.aggressiveness)
        self._rate = 0
        self._splitter: FrameSplitter | None = None
        self._speaking = False
        self._run_ms = 0.0  # length of the current run of speech (silent) frames
        self._run_start_ms = 0.0
        self._onset_ms = 0.0
        self._pre_roll: deque[PCM] = deque()
        self._pending: list[PCM] = []  # frames of a speech run not yet confirmed as speech
        self._utterance: list[PCM] = []
        self._utterance_ms = 0.0
        self._clock_ms = 0.0  # stream time of the next analysis frame
        self._clock_set = False
        self._paused_at: float | None = None  # silent run a SpeechPaused was sent for
        eot: EndOfTurnParams = p.end_of_turn
        self._policy = EndOfTurnPolicy(
            EndOfTurnSettings(
                text_cues=eot.text_cues,
                model=eot.model != "none",
                silence_ms=p.min_silence_ms,
                check_ms=min(eot.check_ms, p.min_silence_ms),
                max_silence_ms=max(eot.max_silence_ms, p.min_silence_ms),
                threshold=eot.threshold,
                words_wait_ms=eot.words_wait_ms,
                digit_lengths=tuple(eot.digit_lengths),
                full_stop_ms=eot.full_stop_ms,
            ),
            words_expected=self._words_expected,
        )
        # The verdict source; tests give a fake one before the call starts.
        self.scorer: Scorer | None = None
        self._check: asyncio.Task[None] | None = None
        self._early_words: EarlyWords | None = None
        self._deciding = asyncio.Lock()  # a verdict and a frame never change state at once

    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """Load the end-of-turn model at service start (and run it once: its first run
        allocates), so a missing model fails before any call and the first check is fast."""
        assert isinstance(params, VadParams)
        if params.end_of_turn.model == "smart-turn":
            scorer = await asyncio.to_thread(SmartTurnScorer, params.end_of_turn)
            await scorer(np.zeros(8000, np.int16), 8000)

    async def start(self) -> None:
        eot: EndOfTurnParams = self.params.end_of_turn
        if eot.model == "smart-turn" and self.scorer is None:
            self.scorer = SmartTurnScorer(eot)
        if eot.text_cues:
            self._early_words = EarlyWords.of(self.ctx)
            self._early_words.subscribe(self._on_words)

    async def stop(self) -> None:
        await self.cancel_tasks()

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AudioIn):
            if self.params.forward_audio:
                await self.emit(frame)
            async with self._deciding:
                await self._analyse(frame)
            return
        if isinstance(frame, CallStarted):
            self._configure(frame.sample_rate)
        await self.emit(frame)

    def _configure(self, rate: int) -> None:
        if rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"vad: WebRTC VAD needs 8000/16000/32000/48000 Hz audio, got {rate}")
        self._rate = rate
        self._splitter = FrameSplitter(samples_for_ms(rate, self.params.frame_ms))
        pre_frames = self.params.pre_roll_ms // self.params.frame_ms
        self._pre_roll = deque(maxlen=max(pre_frames, 0) or None)
        if pre_frames == 0:
            self._pre_roll = deque(maxlen=1)

    async def _analyse(self, frame: AudioIn) -> None:
        if self._splitter is None:
            self._configure(self.ctx.info.sample_rate)
        if not self._clock_set:
            self._clock_ms = frame.timestamp_ms
            self._clock_set = True
        assert self._splitter is not None
        step = float(self.params.frame_ms)
        for piece in self._splitter.push(frame.pcm):
            now = self._clock_ms
            self._clock_ms += step
            speech = self._vad.is_speech(piece.tobytes(), self._rate)
            if self._speaking:
                await self._while_speaking(piece, speech, now, step)
            else:
                await self._while_silent(piece, speech, now, step)

    async def _while_silent(self, piece: PCM, speech: bool, now: float, step: float) -> None:
        p: VadParams = self.params
        if not speech:
            if self._pending:  # a too-short burst: it joins the pre-roll as ordinary audio
                self._pre_roll.extend(self._pending)
                self._pending.clear()
            self._pre_roll.append(piece)
            self._run_ms = 0.0
            return
        if not self._pending:
            self._run_start_ms = now
            self._run_ms = 0.0
        self._pending.append(piece)
        self._run_ms += step
        if self._run_ms >= max(p.min_speech_ms, step):
            self._speaking = True
            self._onset_ms = self._run_start_ms
            self._utterance = [*self._pre_roll, *self._pending]
            self._utterance_ms = step * len(self._utterance)
            self._pre_roll.clear()
            self._pending.clear()
            self._run_ms = 0.0
            await self.emit(SpeechStarted(at_ms=self._onset_ms))

    async def _while_speaking(self, piece: PCM, speech: bool, now: float, step: float) -> None:
        p: VadParams = self.params
        self._utterance.append(piece)
        self._utterance_ms += step
        if speech:
            self._run_ms = 0.0
            self._policy.speech()
            self._cancel_check()
        else:
            if self._run_ms == 0.0:
                self._run_start_ms = now
            self._run_ms += step
            pausing = p.pause_ms and self._run_ms >= p.pause_ms
            if pausing and self._paused_at != self._run_start_ms:
                self._paused_at = self._run_start_ms
                await self.emit(
                    SpeechPaused(
                        at_ms=self._run_start_ms,
                        started_ms=self._onset_ms,
                        audio=np.concatenate(self._utterance),
                    )
                )
            decision = self._policy.silent(self._run_start_ms, now + step)
            if isinstance(decision, StartCheck):
                self._start_check(decision)
            elif isinstance(decision, EndTurn):
                await self._end_turn(decision)
                return
        if self._utterance_ms >= p.max_utterance_ms:
            await self._end(now + step)

    # --- the model check ------------------------------------------------------------------------
    def _start_check(self, check: StartCheck) -> None:
        if self.scorer is None:  # no model: let the policy fall back to the silence timer
            self._policy.verdict(check.silent_since_ms, None)
            return
        audio = np.concatenate(self._utterance)
        self._cancel_check()
        self._check = self.spawn(self._run_check(check.silent_since_ms, audio), name="vad-check")

    def _cancel_check(self) -> None:
        task, self._check = self._check, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()  # a check not yet started is withdrawn from the pool

    async def _run_check(self, since_ms: float, audio: PCM) -> None:
        assert self.scorer is not None
        probability: float | None = None
        try:
            probability = await self.scorer(audio, self._rate)
        except WorkerPoolFull as exc:
            self.log.warning("end_of_turn_overloaded", error=str(exc))
        except Exception as exc:  # a failed check must not end the call: fall back to silence
            self.log.warning("end_of_turn_check_failed", error=f"{type(exc).__name__}: {exc}")
        async with self._deciding:
            decision = self._policy.verdict(since_ms, probability)
            if decision is not None and self._speaking:
                await self._end_turn(decision)

    def _words_expected(self) -> bool:
        """A transcriber in this call publishes its early words (else none are waited for)."""
        return self._early_words is not None and self._early_words.published

    def _on_words(self, since_ms: float, text: str) -> None:
        decision = self._policy.words(since_ms, text)
        if decision is not None:
            self.spawn(self._apply(decision), name="vad-words")

    async def _apply(self, decision: EndTurn) -> None:
        async with self._deciding:
            same_silence = self._run_ms > 0 and decision.silent_since_ms == self._run_start_ms
            if self._speaking and same_silence:
                await self._end_turn(decision)

    async def _end_turn(self, decision: EndTurn) -> None:
        self.log.debug(
            "end_of_turn",
            reason=decision.reason,
            cue=decision.cue,
            probability=None if decision.probability is None else round(decision.probability, 3),
            silence_ms=round(self._run_ms),
        )
        await self._end(decision.silent_since_ms)

    async def _end(self, ended_ms: float) -> None:
        audio = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.int16)
        self._utterance = []
        self._utterance_ms = 0.0
        self._speaking = False
        self._run_ms = 0.0
        self._policy.reset()
        self._cancel_check()
        await self.emit(SpeechEnded(at_ms=ended_ms, started_ms=self._onset_ms, audio=audio))

    @property
    def speaking(self) -> bool:
        return self._speaking
