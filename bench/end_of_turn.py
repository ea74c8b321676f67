"""The end-of-turn decision, measured: premature ends and decision latency, per variant.

Runs the real ``vad`` stage over ``bench/turn_corpus.py``'s utterances (both codecs), frame by
frame on a virtual clock, waiting after each frame until every check and transcription has
answered: the decisions are exact and the same on any machine. For the variants that read words,
whisper (tiny.en, as ``pipelines/offline.yaml`` runs it) transcribes at each 200 ms pause, as its
speculative run does, and publishes the words to the VAD. Every distinct audio is transcribed
and scored once; the variants share the answers. What the checks cost on this machine is
measured separately and reported beside the table.

- premature: a paused utterance (500-1200 ms mid-sentence) whose turn ended in the pause, by
  pause length and by where it paused (after a function word, a content word, inside digits);
- decision latency: from where the caller's last silence began to the frame the turn ended at
  (stream time), on complete utterances; real time adds the compute (reported).

    PYTHONPATH=. python bench/end_of_turn.py [--quick] [--only NAME] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from bench.turn_corpus import PAUSES_MS, SPEAKERS, Utterance, frames, make_corpus
from voicebridge.call.context import CallContext, CallInfo
from voicebridge.clock import VirtualClock
from voicebridge.frames import PCM, AudioIn, Frame, SpeechEnded, SpeechPaused
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.stage import Stage
from voicebridge.stages.end_of_turn.text_cues import judge
from voicebridge.stages.end_of_turn.words import EarlyWords
from voicebridge.stages.vad import SmartTurnScorer, Vad, VadParams

# The receptionist's digit strings: 4- and 5-digit order numbers, 7- and 10-digit phone numbers.
DIGITS = [4, 5, 7, 10]
NO_DIGIT_RULE = list(range(2, 21))  # every length is "known": the digit rule never holds a turn
PROMPT = "Harbor Street Bakery. Opening hours, address, bookings, order status."


@dataclass
class Variant:
    name: str
    vad: dict[str, Any]
    constant: float | None = None  # a scorer that always answers this


def _text(**extra: Any) -> dict[str, Any]:
    return {"end_of_turn": {"text_cues": True, "digit_lengths": DIGITS, **extra}}


VARIANTS = [
    Variant("silence 500 ms (today)", {"end_of_turn": "silence"}),
    Variant("silence 800 ms", {"end_of_turn": "silence", "min_silence_ms": 800}),
    Variant("silence 1300 ms", {"end_of_turn": "silence", "min_silence_ms": 1300}),
    Variant("smart-turn alone", {"end_of_turn": {"model": "smart-turn"}}),
    Variant("text cues, no digit rule", _text(digit_lengths=NO_DIGIT_RULE)),
    Variant("text cues, timer 500 ms", _text()),
    Variant("text cues, timer 800 ms", {**_text(), "min_silence_ms": 800}),
    Variant("text cues, timer 1300 ms", {**_text(), "min_silence_ms": 1300}),
    Variant("text cues, statements 600 ms", {**_text(full_stop_ms=600), "min_silence_ms": 800}),
    Variant("text cues, statements 800 ms", {**_text(full_stop_ms=800), "min_silence_ms": 800}),
    Variant("text cues + smart-turn", {**_text(model="smart-turn"), "min_silence_ms": 800}),
    Variant(
        "text cues + smart-turn 0.8",
        {**_text(model="smart-turn", threshold=0.8), "min_silence_ms": 800},
    ),
    Variant(
        "text cues, statements 800 + smart-turn",
        {**_text(model="smart-turn", full_stop_ms=800), "min_silence_ms": 800},
    ),
]
BASE = {"min_silence_ms": 500, "pause_ms": 200, "forward_audio": False}


def _key(pcm: PCM, rate: int) -> str:
    return f"{rate}:{hashlib.sha1(pcm.tobytes()).hexdigest()}"


class CachedScorer:
    """The real smart-turn model, each distinct input scored once (variants share answers)."""

    def __init__(self, cache: dict[str, float]) -> None:
        self._scorer: SmartTurnScorer | None = None  # loaded on first use
        self.cache = cache

    async def __call__(self, pcm: PCM, rate: int) -> float:
        key = _key(pcm, rate)
        if key not in self.cache:
            if self._scorer is None:
                params = VadParams(end_of_turn="smart-turn")
                self._scorer = SmartTurnScorer(params.end_of_turn)
            self.cache[key] = await self._scorer(pcm, rate)
        return self.cache[key]


class Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    async def __call__(self, pcm: PCM, rate: int) -> float:
        return self.value


class Transcripts:
    """Whisper tiny.en as the offline pipeline runs it; each distinct audio transcribed once."""

    def __init__(self, cache: dict[str, str]) -> None:
        from voicebridge.stages.stt.whisper import WhisperParams

        self.params = WhisperParams(language="en", threads=2, initial_prompt=PROMPT)
        self.cache = cache
        self.seconds: list[float] = []  # wall time of each transcription (cache misses)

    async def text(self, pcm: PCM, rate: int) -> str:
        from voicebridge.stages.stt.whisper import transcribe

        key = _key(pcm, rate)
        if key not in self.cache:
            started = time.perf_counter()
            self.cache[key] = await asyncio.to_thread(transcribe, pcm, rate, self.params)
            self.seconds.append(time.perf_counter() - started)
        return self.cache[key]


class SpeculativeWords(Stage):
    """Whisper's speculative run, for the benchmark: at each pause, the words so far go back to
    the VAD (what ``whisper`` does in a call, without its final transcripts)."""

    type_name = "bench-words"
    role = "stt"

    def __init__(self, transcripts: Transcripts) -> None:
        super().__init__()
        self._transcripts = transcripts
        self.heard: list[tuple[float, str]] = []

    async def start(self) -> None:
        EarlyWords.of(self.ctx).announce()

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, SpeechPaused):
            self.spawn(self._words(frame), name="bench-words")
        await self.emit(frame)

    async def _words(self, frame: SpeechPaused) -> None:
        text = await self._transcripts.text(frame.audio, self.ctx.info.sample_rate)
        self.heard.append((frame.at_ms, text))
        EarlyWords.of(self.ctx).publish(frame.at_ms, text)


@dataclass
class Outcome:
    utt: Utterance
    ends: list[SpeechEnded] = field(default_factory=list)
    end_times: list[float] = field(default_factory=list)  # stream time of the deciding frame
    heard: list[tuple[float, str]] = field(default_factory=list)


async def run_one(
    utt: Utterance, variant: Variant, scorer: CachedScorer, transcripts: Transcripts
) -> Outcome:
    params = VadParams(**{**BASE, **variant.vad})
    vad = Vad(params)
    eot = params.end_of_turn
    if eot.model == "smart-turn":
        vad.scorer = Constant(variant.constant) if variant.constant is not None else scorer
    stages: list[Stage] = [vad]
    words = SpeculativeWords(transcripts) if eot.text_cues else None
    if words is not None:
        stages.append(words)
    info = CallInfo(call_id=utt.name, stream_id=utt.name, sample_rate=utt.rate)
    ctx = CallContext(info, clock=VirtualClock())
    outcome = Outcome(utt)
    now = {"t": 0.0}

    async def sink(frame: Frame) -> None:
        if isinstance(frame, SpeechEnded):
            outcome.ends.append(frame)
            outcome.end_times.append(now["t"])

    errors: list[BaseException] = []
    pipeline = Pipeline(stages, ctx, sink, on_error=lambda stage, exc: errors.append(exc))
    await pipeline.start()
    try:
        await pipeline.push(info.started())
        t = 0.0
        for piece in frames(utt.pcm, utt.rate):
            t += 20.0
            now["t"] = t
            await pipeline.push(AudioIn(piece, t - 20.0))
            await asyncio.wait_for(pipeline.wait_idle(), 120.0)
        await pipeline.drain(30.0)
    finally:
        await pipeline.stop()
    if errors:
        raise errors[0]
    if words is not None:
        outcome.heard = words.heard
    return outcome


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def premature(o: Outcome) -> bool:
    u = o.utt
    assert u.pause_at_ms is not None
    return any(end.at_ms < u.pause_at_ms + u.pause_ms for end in o.ends)


def latency(o: Outcome) -> float | None:
    """Complete utterances: the decision's delay after the caller's last silence began."""
    finals = [
        (end, t)
        for end, t in zip(o.ends, o.end_times, strict=True)
        if end.at_ms >= o.utt.speech_end_ms - 300
    ]
    return finals[0][1] - finals[0][0].at_ms if finals else None


def summarise(name: str, outcomes: list[Outcome]) -> dict[str, Any]:
    by_pause: dict[int, list[bool]] = {}
    by_category: dict[str, list[bool]] = {}
    latencies: list[float] = []
    by_kind: dict[str, list[float]] = {}
    missed = 0
    for o in outcomes:
        u = o.utt
        if u.kind == "paused":
            early = premature(o)
            by_pause.setdefault(u.pause_ms, []).append(early)
            by_category.setdefault(u.category, []).append(early)
            continue
        delay = latency(o)
        if delay is None:
            missed += 1
            continue
        latencies.append(delay)
        by_kind.setdefault(u.category, []).append(delay)
    total = [x for v in by_pause.values() for x in v]
    upto_1s = [x for ms, v in by_pause.items() if ms <= 1000 for x in v]
    return {
        "variant": name,
        "premature_by_pause": {ms: f"{sum(v)}/{len(v)}" for ms, v in sorted(by_pause.items())},
        "premature_by_category": {c: f"{sum(v)}/{len(v)}" for c, v in by_category.items()},
        "premature_rate": sum(total) / max(1, len(total)),
        "premature_rate_upto_1s": sum(upto_1s) / max(1, len(upto_1s)),
        "complete_n": len(latencies),
        "complete_not_ended": missed,
        "decision_ms_p50": pct(latencies, 50),
        "decision_ms_p95": pct(latencies, 95),
        "decision_ms_p50_by_kind": {k: pct(v, 50) for k, v in by_kind.items()},
        "decision_ms_max_by_kind": {k: max(v) for k, v in by_kind.items()},
    }


def time_checks(n: int = 40) -> dict[str, float]:
    """One smart-turn check's cost on one core: about 3 s of speech at 8 kHz."""
    from voicebridge.stages.end_of_turn.smart_turn import load_model

    model = load_model(threads=1)
    utt = make_corpus("mulaw", speakers=[SPEAKERS[0]], paused=[], complete=[("Hi.", "x")])[0]
    audio = np.tile(utt.pcm, 2)
    model.probability(audio, utt.rate)
    walls, cpus = [], []
    for _ in range(n):
        w, c = time.perf_counter(), time.thread_time()
        model.probability(audio, utt.rate)
        cpus.append(1000 * (time.thread_time() - c))
        walls.append(1000 * (time.perf_counter() - w))
    return {
        "smart_turn_wall_p50_ms": pct(walls, 50),
        "smart_turn_wall_p95_ms": pct(walls, 95),
        "smart_turn_cpu_p50_ms": pct(cpus, 50),
        "smart_turn_cpu_p95_ms": pct(cpus, 95),
    }


def time_judge(texts: Iterable[str]) -> float:
    """The text rules' cost per transcript, in microseconds."""
    texts = list(texts) or ["I'd like to book a table for"]
    started = time.thread_time()
    rounds = 200
    for _ in range(rounds):
        for text in texts:
            judge(text, DIGITS)
    return 1e6 * (time.thread_time() - started) / (rounds * len(texts))


def print_table(rows: list[dict[str, Any]]) -> None:
    pauses = list(rows[0]["premature_by_pause"])
    cats = list(rows[0]["premature_by_category"])
    head = " ".join(f"{p:>7}" for p in pauses) + " " + " ".join(f"{c:>9}" for c in cats)
    print(f"\n{'variant':40s} {'prem.':>6s} {'<=1s':>6s} {head}   p50   p95")
    for r in rows:
        cells = " ".join(f"{r['premature_by_pause'][p]:>7}" for p in pauses)
        cells += " " + " ".join(f"{r['premature_by_category'][c]:>9}" for c in cats)
        print(
            f"{r['variant']:40s} {100 * r['premature_rate']:5.1f}% "
            f"{100 * r['premature_rate_upto_1s']:5.1f}% {cells} "
            f"{r['decision_ms_p50']:5.0f} {r['decision_ms_p95']:5.0f}"
            + (f"  (not ended {r['complete_not_ended']})" if r["complete_not_ended"] else "")
        )


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one speaker, μ-law, 800 ms pauses")
    ap.add_argument("--only", help="run only the variants whose name contains this")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--verbose", action="store_true", help="print every premature/slow case")
    ap.add_argument(
        "--cache",
        default=os.path.join(tempfile.gettempdir(), "voicebridge-end-of-turn-cache.json"),
        help="transcripts and scores kept between runs (keyed by the audio's hash)",
    )
    args = ap.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.quick:
        corpus = make_corpus("mulaw", speakers=SPEAKERS[:1], pauses_ms=[800])
    else:
        corpus = make_corpus("mulaw") + make_corpus("l16")
    paused = sum(u.kind == "paused" for u in corpus)
    print(
        f"corpus: {len(corpus)} utterances ({paused} paused, {len(corpus) - paused} complete), "
        f"pauses {sorted({u.pause_ms for u in corpus if u.pause_ms}) or list(PAUSES_MS)} ms",
        file=sys.stderr,
    )
    cache: dict[str, Any] = {"words": {}, "scores": {}}
    if os.path.exists(args.cache):
        with open(args.cache) as f:
            cache = json.load(f)
    scorer = CachedScorer(cache["scores"])
    transcripts = Transcripts(cache["words"])
    rows = []
    for variant in [v for v in VARIANTS if args.only is None or args.only in v.name]:
        started = time.perf_counter()
        outcomes = [await run_one(u, variant, scorer, transcripts) for u in corpus]
        row = summarise(variant.name, outcomes)
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
        if args.verbose:
            for o in outcomes:
                slow = o.utt.kind == "complete" and (latency(o) or 1e9) > 600
                if (o.utt.kind == "paused" and premature(o)) or slow:
                    print(f"   {o.utt.name} {o.utt.text!r} heard={o.heard}", file=sys.stderr)
    with open(args.cache, "w") as f:
        json.dump(cache, f)
    timing = time_checks()
    timing["whisper_speculative_wall_p50_ms"] = 1000 * pct(transcripts.seconds, 50)
    timing["whisper_speculative_wall_p95_ms"] = 1000 * pct(transcripts.seconds, 95)
    timing["text_rules_us_per_transcript"] = time_judge(transcripts.cache.values())
    timing["load_avg_1m"] = os.getloadavg()[0]
    print_table(rows)
    print("cost:", {k: round(v, 1) for k, v in timing.items()})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "cost": timing, "corpus": len(corpus)}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
