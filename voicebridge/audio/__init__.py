"""Media hot path: wire codecs, streaming resampling and framing of mono int16 PCM.

Everything here is vectorised numpy with tables built once at import, sized for 20 ms frames
arriving 50 times a second on hundreds of concurrent calls.
"""

from ._pcm import PCM
from .codec import Codec, L16Codec, MulawCodec, codec_for
from .frames import FrameSplitter, duration_ms, samples_for_ms
from .l16 import l16_decode, l16_encode
from .mulaw import mulaw_decode, mulaw_encode, mulaw_encode_bytes
from .resample import StreamResampler, resample

__all__ = [
    "PCM",
    "Codec",
    "FrameSplitter",
    "L16Codec",
    "MulawCodec",
    "StreamResampler",
    "codec_for",
    "duration_ms",
    "l16_decode",
    "l16_encode",
    "mulaw_decode",
    "mulaw_encode",
    "mulaw_encode_bytes",
    "resample",
    "samples_for_ms",
]
