"""The ``echo`` stage: plays each caller utterance back after it ends.

The classic line test: it needs no model, exercises both directions of the stream, and makes
codec, rate and latency problems audible at once.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from voicebridge.frames import AgentAudio, AudioIn, Frame, SpeechEnded
from voicebridge.runtime.stage import Stage, StageParams


class EchoParams(StageParams):
    min_utterance_ms: int = Field(150, ge=0, description="shorter utterances are not echoed")
    max_echo_ms: int = Field(10000, ge=100, description="longer utterances are cut to this")
    gain_db: float = Field(0.0, ge=-40, le=20, description="applied to the echoed audio")


class Echo(Stage):
    type_name = "echo"
    role = "dialogue"
    # Speech to speech: utterances in, agent audio out, no text in between.
    consumes = (SpeechEnded,)
    produces = (AgentAudio,)
    drops = (AudioIn,)
    description = "Plays back each caller utterance when it ends (line test; no model needed)."
    Params = EchoParams

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AudioIn):
            return  # consumed: only whole utterances matter here
        if isinstance(frame, SpeechEnded):
            await self._echo(frame)
        await self.emit(frame)

    async def _echo(self, frame: SpeechEnded) -> None:
        p: EchoParams = self.params
        rate = self.ctx.info.sample_rate
        audio = frame.audio
        if len(audio) * 1000 < p.min_utterance_ms * rate:
            return
        audio = audio[: p.max_echo_ms * rate // 1000]
        if p.gain_db:
            scaled = audio.astype(np.float32) * np.float32(10 ** (p.gain_db / 20))
            audio = np.clip(scaled, -32768, 32767).astype(np.int16)
        turn = self.begin_turn()
        await self.emit(AgentAudio(pcm=audio, turn=turn, text="(echo)", last=True))
