"""The end-of-turn decision, measured: premature ends and decision latency, per variant.

Runs the real ``vad`` stage (and, for the variants that read words, the real ``whisper`` stage,
whose speculative transcript feeds the text cues) over ``bench/turn_corpus.py``'s utterances,
frame by frame on a virtual clock, waiting after each frame until every check has answered: the
decisions are exact and the same on any machine. The compute a check costs on this machine is
measured separately and reported beside it.

- premature: a paused utterance (500-1200 ms mid-sentence) whose turn ended in the pause;
- decision latency: from where the caller's last silence began to the frame the turn ended at
  (stream time), on complete utterances; real time adds the check's compute (reported).

    PYTHONPATH=. python bench/end_of_turn.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from bench.turn_corpus import Utterance, frames, make_corpus
from voicebridge.call.context import CallContext, CallInfo
from voicebridge.clock import VirtualClock
from voicebridge.frames import PCM, AudioIn, Frame, SpeechEnded
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.stage import Stage
from voicebridge.stages.vad import SmartTurnScorer, Vad, VadParams

RATE = 8000


@dataclass
class Variant:
    name: str
    vad: dict[str, Any]
    words: bool = False  # run whisper, whose speculative words feed the text cues
    constant: float | None = None  # a scorer that always answers this (text cues alone)


VARIANTS = [
    Variant("silence 500 ms (today)", {"end_of_turn": "silence", "min_silence_ms": 500}),
    Variant("silence 800 ms", {"end_of_turn": "silence", "min_silence_ms": 800}),
    Variant("smart-turn", {"end_of_turn": {"model": "smart-turn"}}),
    Variant(
        "smart-turn, threshold 0.9", {"end_of_turn": {"model": "smart-turn", "threshold": 0.9}}
    ),
    Variant(
        "text cues alone",
        {"end_of_turn": {"model": "smart-turn", "text_cues": True}},
        words=True,
        constant=1.0,
    ),
    Variant(
        "smart-turn + text cues",
        {"end_of_turn": {"model": "smart-turn", "text_cues": True}},
        words=True,
    ),
]
BASE = {"min_silence_ms": 500, "pause_ms": 200, "forward_audio": False}


class CachedScorer:
    """The real model, each distinct input scored once (variants share the answers)."""

    def __init__(self) -> None:
        params = VadParams(end_of_turn={"model": "smart-turn"})  # type: ignore[arg-type]
        self._scorer = SmartTurnScorer(params.end_of_turn)
        self._cache: dict[str, float] = {}

    async def __call__(self, pcm: PCM, rate: int) -> float:
        key = hashlib.sha1(pcm.tobytes()).hexdigest()
        if key not in self._cache:
            self._cache[key] = await self._scorer(pcm, rate)
        return self._cache[key]


class Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    async def __call__(self, pcm: PCM, rate: int) -> float:
        return self.value


@dataclass
class Outcome:
    utt: Utterance
    ends: list[tuple[SpeechEnded, float, float]] = field(default_factory=list)  # frame, t, wall


async def run_one(utt: Utterance, variant: Variant, scorer: Callable[..., Any]) -> Outcome:
    params = VadParams(**{**BASE, **variant.vad})
    vad = Vad(params)
    if params.end_of_turn.model == "smart-turn":
        vad.scorer = Constant(variant.constant) if variant.constant is not None else scorer
    stages: list[Stage] = [vad]
    if variant.words:
        from voicebridge.stages.stt.whisper import Whisper

        stages.append(Whisper(language="en", threads=1))
    info = CallInfo(call_id=utt.name, stream_id=utt.name, sample_rate=RATE)
    clock = VirtualClock()
    ctx = CallContext(info, clock=clock)
    outcome = Outcome(utt)
    now = {"t": 0.0, "started": 0.0}

    async def sink(frame: Frame) -> None:
        if isinstance(frame, SpeechEnded):  # wall: since the frame that ended the turn came in
            outcome.ends.append((frame, now["t"], time.perf_counter() - now["started"]))

    errors: list[BaseException] = []
    pipeline = Pipeline(stages, ctx, sink, on_error=lambda stage, exc: errors.append(exc))
    await pipeline.start()
    try:
        await pipeline.push(info.started())
        t = 0.0
        for piece in frames(utt.pcm, RATE):
            now["started"] = time.perf_counter()
            t += 20.0
            now["t"] = t
            await pipeline.push(AudioIn(piece, t - 20.0))
            await asyncio.wait_for(pipeline.wait_idle(), 60.0)
        await pipeline.drain(30.0)
    finally:
        await pipeline.stop()
    if errors:
        raise errors[0]
    return outcome


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarise(name: str, outcomes: list[Outcome]) -> dict[str, Any]:
    premature: dict[int, list[bool]] = {}
    latency: list[float] = []
    compute: list[float] = []
    missed = 0
    for o in outcomes:
        u = o.utt
        if u.kind == "paused":
            assert u.pause_at_ms is not None
            early = any(end.at_ms < u.pause_at_ms + u.pause_ms for end, _, _ in o.ends)
            premature.setdefault(u.pause_ms, []).append(early)
            continue
        finals = [(e, t, w) for e, t, w in o.ends if e.at_ms >= u.speech_end_ms - 300]
        if not finals:
            missed += 1
            continue
        end, t, wall = finals[0]
        latency.append(t - end.at_ms)
        compute.append(1000 * wall)
    row: dict[str, Any] = {
        "variant": name,
        "premature": {f"{ms} ms": f"{sum(v)}/{len(v)}" for ms, v in sorted(premature.items())},
        "premature_rate": sum(sum(v) for v in premature.values())
        / max(1, sum(len(v) for v in premature.values())),
        "complete_n": len(latency),
        "complete_not_ended": missed,
        "decision_ms_p50": pct(latency, 50),
        "decision_ms_p95": pct(latency, 95),
        "check_wall_ms_p50": pct(compute, 50),
        "check_wall_ms_p95": pct(compute, 95),
    }
    return row


def time_checks(n: int = 60) -> dict[str, float]:
    """One check's cost on one core: 3 s of speech at 8 kHz (the model always reads 8 s)."""
    from voicebridge.stages.end_of_turn.smart_turn import load_model

    model = load_model(threads=1)
    pcm = make_corpus(RATE, speakers=[(-2.0, 1.0)], paused=[], complete=["What time do you open?"])
    audio = pcm[0].pcm
    model.probability(audio, RATE)
    walls, cpus = [], []
    for _ in range(n):
        w, c = time.perf_counter(), time.thread_time()
        model.probability(audio, RATE)
        cpus.append(1000 * (time.thread_time() - c))
        walls.append(1000 * (time.perf_counter() - w))
    return {
        "wall_p50_ms": pct(walls, 50),
        "wall_p95_ms": pct(walls, 95),
        "cpu_p50_ms": pct(cpus, 50),
        "cpu_p95_ms": pct(cpus, 95),
        "load_avg_1m": os.getloadavg()[0],
    }


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one speaker, one pause length")
    ap.add_argument("--only", help="run only the variants whose name contains this")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    if args.quick:
        corpus = make_corpus(RATE, speakers=[(-2.0, 1.0)], pauses_ms=[800])
    else:
        corpus = make_corpus(RATE)
    print(f"corpus: {len(corpus)} utterances at {RATE} Hz", file=sys.stderr)
    scorer = CachedScorer()
    rows = []
    for variant in [v for v in VARIANTS if args.only is None or args.only in v.name]:
        started = time.perf_counter()
        outcomes = [await run_one(u, variant, scorer) for u in corpus]
        row = summarise(variant.name, outcomes)
        rows.append(row)
        print(json.dumps(row), f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    timing = time_checks()
    result = {"rows": rows, "check_timing": timing, "corpus": len(corpus)}
    print(f"\n{'variant':28s} {'premature':>10s}  by pause              {'p50':>5s} {'p95':>5s}")
    for r in rows:
        print(
            f"{r['variant']:28s} {100 * r['premature_rate']:9.1f}%  "
            f"{' '.join(f'{k}:{v}' for k, v in r['premature'].items()):22s}"
            f"{r['decision_ms_p50']:5.0f} {r['decision_ms_p95']:5.0f}  "
            f"(check wall p50 {r['check_wall_ms_p50']:.0f} ms, not ended {r['complete_not_ended']})"
        )
    print("one check:", {k: round(v, 1) for k, v in timing.items()})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=statistics.mean)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
