"""The ``encode`` stage: agent PCM to the stream's codec, ready for ``playAudio``."""

from __future__ import annotations

from voicebridge.audio.codec import Codec, codec_for
from voicebridge.frames import AgentAudio, AudioIn, CallStarted, Frame, OutputAudio
from voicebridge.runtime.stage import Stage, StageParams


class Encode(Stage):
    type_name = "encode"
    role = "encode"
    passthrough = (AudioIn,)  # caller audio goes around this stage
    inline = True  # pure computation: called directly, no queue or task of its own
    description = "Encodes agent audio into the stream's own codec (never switching mid-stream)."

    class Params(StageParams):
        pass

    def __init__(self, params: StageParams | None = None, /, **kwargs: object) -> None:
        super().__init__(params, **kwargs)
        self._codec: Codec | None = None

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, AgentAudio):
            codec = self._codec or self._codec_from_context()
            rate = self.ctx.info.sample_rate
            await self.emit(
                OutputAudio(
                    payload=codec.encode(frame.pcm),
                    turn=frame.turn,
                    text=frame.text,
                    last=frame.last,
                    duration_ms=1000.0 * len(frame.pcm) / rate,
                    word_ends_ms=frame.word_ends_ms,
                )
            )
            return
        if isinstance(frame, CallStarted):
            self._codec = codec_for(frame.encoding)
        await self.emit(frame)

    def _codec_from_context(self) -> Codec:
        self._codec = codec_for(self.ctx.info.encoding)
        return self._codec
