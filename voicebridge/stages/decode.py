"""The ``decode`` stage: caller audio from the stream's codec to int16 PCM."""

from __future__ import annotations

from voicebridge.audio.codec import Codec, codec_for
from voicebridge.frames import AudioIn, CallStarted, Frame, MediaIn
from voicebridge.runtime.stage import Stage, StageParams


class Decode(Stage):
    type_name = "decode"
    role = "decode"
    inline = True  # pure computation: called directly, no queue or task of its own
    description = "Decodes caller audio (μ-law or L16) into PCM at the stream's rate."

    class Params(StageParams):
        pass

    def __init__(self, params: StageParams | None = None, /, **kwargs: object) -> None:
        super().__init__(params, **kwargs)
        self._codec: Codec | None = None

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, MediaIn):
            codec = self._codec or self._codec_from_context()
            await self.emit(AudioIn(codec.decode(frame.payload), frame.timestamp_ms))
            return
        if isinstance(frame, CallStarted):
            self._codec = codec_for(frame.encoding)
        await self.emit(frame)

    def _codec_from_context(self) -> Codec:
        self._codec = codec_for(self.ctx.info.encoding)
        return self._codec
