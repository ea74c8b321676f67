"""Media-path kernels, in µs per 20 ms frame, against their floor (copying the same bytes).

    PYTHONPATH=. python bench/kernels.py            # voicebridge, then Pipecat (its venv) beside it
    PYTHONPATH=. python bench/kernels.py --only voicebridge

Each kernel runs on one 20 ms frame (μ-law 8 kHz: 160 bytes; L16 16 kHz: 640 bytes) many times;
the figure is the median of 7 repeats of the mean, in CPU time. The floor is
``bytes(bytearray(x))`` of the frame's bytes: a copy, the least work on that frame from Python.
Writes
``bench/out/kernels.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"


def measure(fn: Any, number: int = 2000) -> float:
    """µs per call: median over 7 repeats of ``number`` calls."""
    fn()
    # CPU time, not wall time: other work on a shared machine does not inflate it.
    runs = timeit.repeat(fn, number=number, repeat=7, timer=time.process_time)
    return round(float(np.median(runs)) / number * 1e6, 2)


def frames() -> dict[str, Any]:
    rng = np.random.default_rng(6)
    t = np.arange(320) / 16000
    pcm16k = (3000 * np.sin(2 * np.pi * 220 * t) + rng.normal(0, 300, 320)).astype(np.int16)
    pcm8k = pcm16k[::2].copy()
    return {"pcm8k": pcm8k, "pcm16k": pcm16k}


def media_message(payload: bytes) -> str:
    return json.dumps(
        {
            "sequenceNumber": 887,
            "streamId": "b7f1b1e2-8b7c-4b2c-9f6e-3f1c2a9d0e11",
            "event": "media",
            "media": {
                "track": "inbound",
                "timestamp": "1687353805345",
                "chunk": 469,
                "payload": base64.b64encode(payload).decode(),
            },
            "extra_headers": "{}",
        }
    )


def voicebridge_kernels() -> dict[str, float]:
    import webrtcvad

    from voicebridge.audio.l16 import l16_decode, l16_encode
    from voicebridge.audio.mulaw import mulaw_decode, mulaw_encode_bytes
    from voicebridge.audio.resample import StreamResampler
    from voicebridge.plivo.events import parse_event
    from voicebridge.plivo.formats import StreamFormat
    from voicebridge.plivo.messages import PlayAudioEncoder

    f = frames()
    pcm8k, pcm16k = f["pcm8k"], f["pcm16k"]
    law = mulaw_encode_bytes(pcm8k)
    l16 = l16_encode(pcm16k)
    up = StreamResampler(8000, 16000)
    down = StreamResampler(16000, 8000)
    vad = webrtcvad.Vad(2)
    law_msg = media_message(law)
    l16_msg = media_message(l16)
    encoder = PlayAudioEncoder(StreamFormat("audio/x-mulaw", 8000), "stream-1")
    b64 = base64.b64encode(law)
    return {
        "floor: copy 160 B": measure(lambda: bytes(bytearray(law))),
        "floor: copy 640 B": measure(lambda: bytes(bytearray(l16))),
        "mu-law decode (160 B -> int16)": measure(lambda: mulaw_decode(law)),
        "mu-law encode (int16 -> 160 B)": measure(lambda: mulaw_encode_bytes(pcm8k)),
        "L16 unpack (640 B -> int16)": measure(lambda: l16_decode(l16)),
        "L16 pack (int16 -> 640 B)": measure(lambda: l16_encode(pcm16k)),
        "resample 8k -> 16k (streaming)": measure(lambda: up.process(pcm8k)),
        "resample 16k -> 8k (streaming)": measure(lambda: down.process(pcm16k)),
        "VAD (WebRTC, 20 ms at 8 kHz)": measure(lambda: vad.is_speech(pcm8k.tobytes(), 8000)),
        "base64 decode (160 B frame)": measure(lambda: base64.b64decode(b64)),
        "base64 encode (160 B frame)": measure(lambda: base64.b64encode(law)),
        "JSON+base64: parse a media message (mu-law)": measure(lambda: parse_event(law_msg)),
        "JSON+base64: parse a media message (L16 16k)": measure(lambda: parse_event(l16_msg)),
        "JSON+base64: playAudio message (20 ms mu-law)": measure(lambda: encoder.encode(law)),
    }


def per_item(value: float, batch: int = 200) -> float:
    return round(value / batch, 2)


def pipecat_kernels() -> dict[str, float]:
    import asyncio

    from loguru import logger

    logger.remove()
    from pipecat.audio.utils import create_stream_resampler, pcm_to_ulaw, ulaw_to_pcm
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.frames.frames import OutputAudioRawFrame
    from pipecat.serializers.plivo import PlivoFrameSerializer

    f = frames()
    pcm8k, pcm16k = f["pcm8k"], f["pcm16k"]
    loop = asyncio.new_event_loop()

    def run(coro_fn: Any, batch: int = 200) -> Any:
        """One call of the returned function awaits ``coro_fn()`` ``batch`` times inside one
        coroutine, so the event loop's own cost is spread over the batch."""

        async def many() -> None:
            for _ in range(batch):
                await coro_fn()

        return lambda: loop.run_until_complete(many())

    rs_in, rs_out = create_stream_resampler(), create_stream_resampler()
    rs_up, rs_down = create_stream_resampler(), create_stream_resampler()
    law = loop.run_until_complete(pcm_to_ulaw(pcm8k.tobytes(), 8000, 8000, rs_out))
    serializer = PlivoFrameSerializer(
        "stream-1", params=PlivoFrameSerializer.InputParams(auto_hang_up=False)
    )
    serializer._sample_rate = 8000
    msg = media_message(law)
    out_frame = OutputAudioRawFrame(pcm8k.tobytes(), 8000, 1)
    vad = SileroVADAnalyzer(sample_rate=8000)
    vad.set_sample_rate(8000)
    b8 = pcm8k.tobytes()

    return {
        "mu-law decode (160 B -> int16)": per_item(
            measure(run(lambda: ulaw_to_pcm(law, 8000, 8000, rs_in)), 5)
        ),
        "mu-law encode (int16 -> 160 B)": per_item(
            measure(run(lambda: pcm_to_ulaw(b8, 8000, 8000, rs_out)), 5)
        ),
        "resample 8k -> 16k (streaming)": per_item(
            measure(run(lambda: rs_up.resample(b8, 8000, 16000)), 5)
        ),
        "resample 16k -> 8k (streaming)": per_item(
            measure(run(lambda: rs_down.resample(pcm16k.tobytes(), 16000, 8000)), 5)
        ),
        "VAD (Silero, 20 ms at 8 kHz; runs per 32 ms window)": per_item(
            measure(run(lambda: vad.analyze_audio(b8)), 5)
        ),
        "JSON+base64: parse a media message (mu-law)": per_item(
            measure(run(lambda: serializer.deserialize(msg)), 5)
        ),
        "JSON+base64: playAudio message (20 ms mu-law)": per_item(
            measure(run(lambda: serializer.serialize(out_frame)), 5)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["voicebridge", "pipecat"])
    parser.add_argument(
        "--json", action="store_true", help="print JSON (used between the two envs)"
    )
    parser.add_argument(
        "--pipecat-python", default=str(REPO / "bench" / ".venv-pipecat" / "bin" / "python")
    )
    args = parser.parse_args()
    if args.only == "pipecat":
        result = pipecat_kernels()
        print(json.dumps(result) if args.json else result)
        return
    vb = voicebridge_kernels()
    pc: dict[str, float] = {}
    if args.only is None:
        python = Path(args.pipecat_python)
        if not python.exists():
            sys.path.insert(0, str(REPO))
            from bench.capacity import pipecat_python

            python = pipecat_python()
        done = subprocess.run(
            [str(python), str(Path(__file__).resolve()), "--only", "pipecat", "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        pc = json.loads(done.stdout.strip().splitlines()[-1])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "kernels.json").write_text(json.dumps({"voicebridge": vb, "pipecat": pc}, indent=1))
    rows = ["| kernel, per 20 ms frame | voicebridge µs | Pipecat 1.14 µs |", "|---|---|---|"]
    for name in dict.fromkeys([*vb, *pc]):
        theirs = pc.get(name)
        rows.append(f"| {name} | {vb.get(name, '-')} | {theirs if theirs is not None else '-'} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
