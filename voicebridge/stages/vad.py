"""The ``vad`` stage: finds where the caller's speech starts and ends (WebRTC VAD).

Speech must last ``min_speech_ms`` before it counts (clicks and coughs do not), and silence must
last ``min_silence_ms`` before the utterance ends. The utterance handed downstream starts
``pre_roll_ms`` before the detected onset so the first syllable is not lost. Caller audio is passed
on unchanged for streaming transcribers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import webrtcvad
from pydantic import Field

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
from voicebridge.runtime.stage import Stage, StageParams


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


class Vad(Stage):
    type_name = "vad"
    role = "vad"
    description = "Detects caller speech onset and end with WebRTC VAD; keeps a pre-roll."
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

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AudioIn):
            if self.params.forward_audio:
                await self.emit(frame)
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
        else:
            if self._run_ms == 0.0:
                self._run_start_ms = now
            self._run_ms += step
            pausing = p.pause_ms and p.pause_ms <= self._run_ms < p.min_silence_ms
            if pausing and self._paused_at != self._run_start_ms:
                self._paused_at = self._run_start_ms
                await self.emit(
                    SpeechPaused(
                        at_ms=self._run_start_ms,
                        started_ms=self._onset_ms,
                        audio=np.concatenate(self._utterance),
                    )
                )
        if self._run_ms >= p.min_silence_ms:
            await self._end(self._run_start_ms)
        elif self._utterance_ms >= p.max_utterance_ms:
            await self._end(now + step)

    async def _end(self, ended_ms: float) -> None:
        audio = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.int16)
        self._utterance = []
        self._utterance_ms = 0.0
        self._speaking = False
        self._run_ms = 0.0
        await self.emit(SpeechEnded(at_ms=ended_ms, started_ms=self._onset_ms, audio=audio))

    @property
    def speaking(self) -> bool:
        return self._speaking
