"""The audio a realtime model takes and gives, and the conversions to and from the pipeline's.

Inside a pipeline, audio is int16 PCM at the stream's rate. A model wants its own format on the
wire: OpenAI takes G.711 μ-law at 8 kHz (``audio/pcmu``) or 16-bit PCM at 24 kHz; Gemini takes
16-bit PCM at 16 kHz and answers at 24 kHz. Where the model speaks the stream's own format (μ-law
8 kHz both ways), nothing is resampled: μ-law decoding and encoding are exact inverses, so the
bytes reach the model as Plivo sent them. Otherwise the project's streaming resampler carries its
state across chunks, one per direction; a reply's filter tail is drained at the end of each
model item (``flush_out``), so every millisecond the model produced reaches the caller, and the
output stays time-aligned: output millisecond ``n`` is the model's millisecond ``n``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from voicebridge.audio import (
    PCM,
    StreamResampler,
    l16_decode,
    l16_encode,
    mulaw_decode,
    mulaw_encode_bytes,
)


@dataclass(frozen=True, slots=True)
class WireFormat:
    """One direction's audio as the model has it: ``mulaw`` or ``l16`` (little-endian), a rate."""

    codec: str
    rate: int

    @property
    def bytes_per_ms(self) -> float:
        return self.rate / 1000.0 * (1 if self.codec == "mulaw" else 2)


MULAW_8K = WireFormat("mulaw", 8000)
L16_16K = WireFormat("l16", 16000)
L16_24K = WireFormat("l16", 24000)


class ModelAudio:
    """Caller audio to the model, model audio to the pipeline, for one call."""

    def __init__(self, pipeline_rate: int, to_model: WireFormat, from_model: WireFormat) -> None:
        self.pipeline_rate = pipeline_rate
        self.to_model = to_model
        self.from_model = from_model
        self._in = StreamResampler(pipeline_rate, to_model.rate)
        self._out = StreamResampler(from_model.rate, pipeline_rate)

    # --- caller -> model ----------------------------------------------------------------------
    def encode_in(self, pcm: PCM) -> bytes:
        """Caller PCM at the pipeline rate as the model's input bytes."""
        pcm = self._in.process(pcm)
        return mulaw_encode_bytes(pcm) if self.to_model.codec == "mulaw" else l16_encode(pcm)

    def encode_in_b64(self, pcm: PCM) -> str:
        return base64.b64encode(self.encode_in(pcm)).decode("ascii")

    # --- model -> caller ----------------------------------------------------------------------
    def model_ms(self, data: bytes) -> float:
        """How long ``data`` of model output plays."""
        return len(data) / self.from_model.bytes_per_ms

    def decode_out(self, data: bytes) -> PCM:
        """Model output bytes as PCM at the pipeline rate (the resampler keeps its state)."""
        if self.from_model.codec == "mulaw":
            pcm = mulaw_decode(data)
        else:
            pcm = l16_decode(data[: len(data) - len(data) % 2])
        return self._out.process(pcm)

    def flush_out(self) -> PCM:
        """The end of one model item: drain the resampler's tail (nothing when not resampling)."""
        return self._out.flush()

    def reset_out(self) -> None:
        """A reply was cut off: what the resampler holds of it must not leak into the next."""
        self._out.reset()

    @staticmethod
    def silence() -> PCM:
        return np.zeros(0, np.int16)
