"""Turn-taking over the wire, in real time: premature replies, reply latency and exact digits.

The real service runs in a child process (``voicebridge serve``'s code, on 127.0.0.1) with the
shipped offline receptionist, once per variant; simulated Plivo callers stream
``bench/turn_corpus.py``'s utterances over the WebSocket at real time (20 ms frames, paced by
the wall clock) and keep every message the agent sent, stamped with the caller's clock. Side by
side, call by call in turn, so any load from other processes falls on both:

- ``silence``: the silence timer alone at the settings before issue 15 (``min_silence_ms: 500``,
  ``end_of_turn: silence``);
- ``decision``: ``pipelines/offline.yaml`` as shipped (the end-of-turn decision with text cues).

Measured per utterance, on the caller's clock (what a caller would hear):

- **premature**: a paused utterance (500-1200 ms of silence mid-sentence where a person is
  clearly not done) during which the agent started speaking before the caller had finished;
  ``ended early`` counts the turns the service ended inside the sentence (from its timeline),
  whether or not audio followed;
- **latency**: a complete utterance's end of speech (the last word's end, from the voice's
  alignments) to the first agent audio the caller heard, p50/p95;
- **digits exact**: the receptionist repeats an order number back ("Order five five one two
  seven ..."): the reply carries the spoken digits exactly;
- **on topic**: a complete question or statement got the reply the receptionist's rules give to
  the exact sentence (so the rules' own coverage is not counted against the transcriber).

Calls run one at a time; within a call the caller speaks its next line 1.2 s after the agent's
reply started (a barge-in: the receptionist's replies are long), and lines that end the call
(a goodbye, a transfer) come last. Run from the repository root::

    PYTHONPATH=. python bench/turns.py            # 2 speakers per codec, about 55 minutes
    PYTHONPATH=. python bench/turns.py --speakers 1   # one per codec (three voices), 28 min
    PYTHONPATH=. python bench/turns.py --quick    # one short call per variant, about 2 minutes

Results: ``bench/out/turns.json`` and a markdown summary on stdout. Needs the ``piper`` extra
(the corpus's voices) and the ``offline`` extra (the service).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script from anywhere: use this checkout

import yaml  # noqa: E402

from bench.turn_corpus import COMPLETE, PAUSED, SPEAKERS, Utterance, make_corpus  # noqa: E402

PIPELINE = REPO / "pipelines" / "offline.yaml"
DEFAULT_OUT = REPO / "bench" / "out" / "turns.json"

PAUSES_MS = (500, 800, 1200)
# Digit strings of 6 and 8 digits beside the corpus's 4, 5 and 7 (the issue asks for 4 to 8).
EXTRA_COMPLETE: tuple[tuple[str, str], ...] = (
    ("My code is three nine two six one eight.", "digits"),
    ("The reference is two four six eight one three five seven.", "digits"),
)
# Lines the receptionist answers by ending the call (a goodbye, a transfer): last in a call.
ENDS_CALL = ("Thank you, that's all.", "Can I speak to a manager please?")
LINES_PER_CALL = 12
BARGE_AFTER_S = 1.2  # the caller speaks its next line this long after a reply started
REPLY_TIMEOUT_S = 6.0  # no reply for this long after a line: unanswered
LEAD_S = 0.4  # silence before each line's first word
QUIET_PCT = 10.0  # a call during which other processes took less of the machine than this
GOALS = {"premature_le_1s_pct": 5.0, "latency_p50_ms": 500.0, "latency_p95_ms": 800.0}
GOALS.update({"digits_exact_pct": 98.0, "on_topic_pct": 95.0})

DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}


# --- the variants -----------------------------------------------------------------------------


def variant_pipelines(out_dir: Path, pause_ms: int | None = None) -> dict[str, Path]:
    """The shipped offline pipeline, and the same with the silence timer as it was before;
    ``pause_ms`` tries the decision with whisper's speculative run at another pause."""
    spec = yaml.safe_load(PIPELINE.read_text(encoding="utf-8"))
    before = json.loads(json.dumps(spec))
    for stage in before["stages"]:
        if stage["type"] == "vad":
            stage["params"]["end_of_turn"] = "silence"
            stage["params"]["min_silence_ms"] = 500
            stage["params"]["pause_ms"] = 200
    path = out_dir / "turns-silence.yaml"
    path.write_text(yaml.safe_dump(before, sort_keys=False), encoding="utf-8")
    if pause_ms is None:
        return {"silence": path, "decision": PIPELINE}
    for stage in spec["stages"]:
        if stage["type"] == "vad":
            stage["params"]["pause_ms"] = pause_ms
    tried = out_dir / "turns-decision.yaml"
    tried.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return {"silence": path, f"decision-pause-{pause_ms}": tried}


# --- what each line should get back ------------------------------------------------------------


def spoken_digits(text: str) -> str:
    """The longest run of digit words in ``text`` as digits ("five five one two" -> "5512")."""
    best = run = ""
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in DIGIT_WORDS:
            run += DIGIT_WORDS[word]
            best = max(best, run, key=len)
        else:
            run = ""
    return best


class Receptionist:
    """The offline receptionist's rules, applied to the exact sentence: what it should say."""

    def __init__(self) -> None:
        from voicebridge.config import load_pipeline
        from voicebridge.stages.dialogue.rule_match import Matcher

        spec = load_pipeline(PIPELINE)
        params = next(s.params for s in spec.stages if s.type == "rules")
        self.fallback = str(params.fallback)
        self.matchers = [Matcher(rule) for rule in params.rules]

    def reply(self, text: str) -> str:
        from voicebridge.digits import normalise_digits
        from voicebridge.stages.dialogue.rule_match import best_match, fill

        found = best_match(self.matchers, normalise_digits(text), "specific")
        if found is None:
            return self.fallback
        matcher, match = found
        template = matcher.rule.reply if isinstance(matcher.rule.reply, str) else None
        return fill(template or "", match.groups) if template else self.fallback


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


# --- one line, measured ------------------------------------------------------------------------


@dataclass
class LineResult:
    """What happened to one utterance of the corpus."""

    name: str
    variant: str
    text: str
    kind: str
    category: str
    codec: str
    pause_ms: int
    transcript: str = ""
    reply: str = ""
    expected_reply: str = ""
    ended_early: bool = False  # the service ended the turn before the caller finished
    premature: bool = False  # ... and the agent's audio started before the caller finished
    latency_s: float | None = None  # complete lines: end of speech -> first agent audio heard
    decided_s: float | None = None  # end of speech -> the service's end of the turn (stream time)
    heard: list[str] = dataclasses.field(default_factory=list)  # every transcript in the line
    others_cpu_pct: float | None = None  # other processes' share of the machine in its call
    digits: str = ""  # the digit string said, if the line carries one
    digits_exact: bool | None = None
    on_topic: bool | None = None


def measure_line(
    utt: Utterance,
    variant: str,
    start_s: float,
    next_start_s: float,
    played_starts: Sequence[float],
    events: Sequence[dict[str, Any]],
    expected_reply: str,
) -> LineResult:
    """One line's figures from the caller's record and the service's timeline.

    ``start_s``: where the line began on the call's clock (its lead silence included);
    ``next_start_s``: where the next line began (or the call ended); ``played_starts``: where
    each stretch of agent audio the caller heard began; ``events``: the service's timeline of
    the call (``t`` in stream seconds, which is the caller's clock: both start at ``start``)."""
    r = LineResult(utt.name, variant, utt.text, utt.kind, utt.category, utt.codec, utt.pause_ms)
    speech_end = start_s + utt.speech_end_ms / 1000.0
    first_word = start_s + LEAD_S
    window = [e for e in events if first_word <= float(e.get("t", -1.0)) < next_start_s]
    ends = [float(e["t"]) for e in window if e.get("kind") == "speech_ended"]
    early = [t for t in ends if t < speech_end - 0.02]
    r.ended_early = bool(early)
    if early:
        r.premature = any(early[0] <= s < speech_end for s in played_starts)
    last_end = max(ends) if ends else None
    if last_end is not None and last_end >= speech_end - 0.02:
        r.decided_s = round(last_end - speech_end, 3)
    heard = [s for s in played_starts if speech_end - 0.02 <= s < next_start_s]
    if utt.kind == "complete" and not r.ended_early and heard:
        r.latency_s = round(heard[0] - speech_end, 3)
    # The reply to the whole line: the turn whose first text came after the last end of turn.
    if last_end is not None:
        r.heard = [str(e.get("text", "")) for e in window if e.get("kind") == "caller_said"]
        said = [e for e in window if e.get("kind") == "caller_said" and float(e["t"]) >= last_end]
        if said:
            r.transcript = str(said[0].get("text", ""))
        texts = [e for e in window if e.get("kind") == "agent_text" and float(e["t"]) >= last_end]
        if texts:
            turn = texts[0].get("turn")
            r.reply = " ".join(str(e.get("text", "")) for e in texts if e.get("turn") == turn)
    r.expected_reply = expected_reply
    digits = spoken_digits(utt.text)
    if len(digits) >= 4:
        r.digits = digits
        from voicebridge.digits import digits_spoken

        r.digits_exact = _norm(digits_spoken(digits)) in _norm(r.reply)
    if utt.kind == "complete" and utt.category in ("question", "statement"):
        r.on_topic = _norm(r.reply) == _norm(expected_reply)
    return r


# --- calls -------------------------------------------------------------------------------------


def plan_calls(utts: Sequence[Utterance], seed: int) -> list[list[Utterance]]:
    """The lines of one speaker and codec in calls of ``LINES_PER_CALL``, shuffled (seeded),
    with each line that ends the call last in a call of its own group."""
    rng = random.Random(seed)
    normal = [u for u in utts if u.text not in ENDS_CALL]
    closing = [u for u in utts if u.text in ENDS_CALL]
    rng.shuffle(normal)
    calls = [normal[i : i + LINES_PER_CALL] for i in range(0, len(normal), LINES_PER_CALL)]
    calls = calls or [[]]
    for i, line in enumerate(closing):
        calls[i % len(calls)].append(line)
    return [c for c in calls if c]


async def run_call(
    service: Any, variant: str, lines: Sequence[Utterance], receptionist: Receptionist
) -> tuple[list[LineResult], dict[str, Any]]:
    """One real-time call: every line, then the figures of each."""
    from voicebridge.plivo.formats import StreamFormat
    from voicebridge.sim.caller import PlivoCaller

    fmt = StreamFormat.from_short(lines[0].codec, lines[0].rate)
    caller = PlivoCaller(service.ws_url, fmt, speed=1.0)
    record = await asyncio.wait_for(
        caller.run_turns(
            [u.pcm for u in lines],
            gap_s=0.8,
            reply_timeout_s=REPLY_TIMEOUT_S,
            interrupt_after_s=BARGE_AFTER_S,
        ),
        timeout=60.0 + 15.0 * len(lines),
    )
    events = await service.events_for(record.stream_id)
    starts = [s for s, _ in record.played_spans]
    spans = record.utterance_spans
    results = []
    for i, utt in enumerate(lines[: len(spans)]):
        nxt = spans[i + 1][0] if i + 1 < len(spans) else record.duration_s + 1.0
        expected = receptionist.reply(utt.text)
        results.append(measure_line(utt, variant, spans[i][0], nxt, starts, events, expected))
    info = {
        "variant": variant,
        "lines": len(lines),
        "spoken": len(spans),
        "duration_s": round(record.duration_s, 1),
        "closed_by": record.closed_by,
        "protocol_errors": list(record.protocol_errors),
    }
    return results, info


# --- statistics --------------------------------------------------------------------------------


def pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def summarise(lines: Sequence[LineResult]) -> dict[str, Any]:
    """A variant's figures: premature by pause length and category, latency, digits, topic."""
    from voicebridge.sim.report import latency_stats

    paused = [r for r in lines if r.kind == "paused"]
    short = [r for r in paused if r.pause_ms <= 1000]
    complete = [r for r in lines if r.kind == "complete"]
    by_pause = {
        str(p): {
            "n": len(rs := [r for r in paused if r.pause_ms == p]),
            "premature": sum(r.premature for r in rs),
            "ended_early": sum(r.ended_early for r in rs),
        }
        for p in sorted({r.pause_ms for r in paused})
    }
    by_category = {}
    for c in sorted({r.category for r in paused}):
        rs = [r for r in paused if r.category == c]
        by_category[c] = {"n": len(rs), "premature": sum(r.premature for r in rs)}
    latency = latency_stats([r.latency_s for r in complete if r.latency_s is not None])
    quiet = [r for r in complete if (r.others_cpu_pct or 0.0) < QUIET_PCT]
    latency_quiet = latency_stats([r.latency_s for r in quiet if r.latency_s is not None])
    decided = latency_stats([r.decided_s for r in complete if r.decided_s is not None])
    digit_lines = [r for r in lines if r.digits_exact is not None]
    topical = [r for r in lines if r.on_topic is not None]
    return {
        "lines": len(lines),
        "premature_pct": pct(sum(r.premature for r in paused), len(paused)),
        "premature_le_1s_pct": pct(sum(r.premature for r in short), len(short)),
        "ended_early_le_1s_pct": pct(sum(r.ended_early for r in short), len(short)),
        "complete_ended_early": sum(r.ended_early for r in complete),
        "by_pause": by_pause,
        "by_category": by_category,
        "latency_ms": _in_ms(latency),
        "latency_quiet_ms": _in_ms(latency_quiet),
        "decided_ms": _in_ms(decided),
        "complete_unanswered": sum(
            1 for r in complete if r.latency_s is None and not r.ended_early
        ),
        "digits_exact_pct": pct(sum(bool(r.digits_exact) for r in digit_lines), len(digit_lines)),
        "digits_n": len(digit_lines),
        "on_topic_pct": pct(sum(bool(r.on_topic) for r in topical), len(topical)),
        "on_topic_n": len(topical),
    }


def _in_ms(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v * 1000) if isinstance(v, float) else v) for k, v in stats.items()}


def verdicts(summary: dict[str, Any]) -> dict[str, str]:
    """Each goal of the issue: met or missed, with the figure."""
    out = {}
    for key, goal in GOALS.items():
        if key.startswith("latency"):
            value = summary["latency_ms"][key.split("_")[1]]
            met = value is not None and value < goal
        else:
            value = summary[key]
            met = value is not None and (value < goal if "premature" in key else value >= goal)
        below = "premature" in key or "latency" in key
        out[key] = f"{'met' if met else 'missed'}: {value} (goal {'<' if below else '>='} {goal:g})"
    return out


# --- the run -----------------------------------------------------------------------------------


def progress(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def corpus(quick: bool, speakers: int) -> list[list[Utterance]]:
    """The lines, as calls: for each codec and speaker, paused and complete utterances."""
    per_codec: list[list[list[Utterance]]] = []
    for c, codec in enumerate(("mulaw", "l16")):
        plans: list[list[Utterance]] = []
        # each codec its own speakers where there are enough: more voices for the same time
        for s in ((c + k) % len(SPEAKERS) for k in range(speakers)):
            speaker = SPEAKERS[s]
            if quick:
                utts = make_corpus(
                    codec,
                    speakers=[speaker],
                    pauses_ms=(800,),
                    paused=PAUSED[:1] + PAUSED[12:13],
                    complete=COMPLETE[:2] + COMPLETE[7:8] + COMPLETE[14:15],
                    lead_s=LEAD_S,
                    tail_s=0.0,
                )
            else:
                utts = make_corpus(
                    codec,
                    speakers=[speaker],
                    pauses_ms=PAUSES_MS,
                    complete=COMPLETE + EXTRA_COMPLETE,
                    lead_s=LEAD_S,
                    tail_s=0.0,
                )
            utts = [dataclasses.replace(u, name=u.name.replace("-s0-", f"-s{s}-")) for u in utts]
            plans.extend(plan_calls(utts, seed=1000 * s + len(codec)))
            if quick:
                return plans
        per_codec.append(plans)
    # the codecs call by call, so load from other processes falls on both
    mixed = itertools.zip_longest(*per_codec)
    return [call for pair in mixed for call in pair if call]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.offline_latency import CpuWatch, code_version, machine_info, start_service

    began = time.monotonic()
    out_dir = Path(args.out).resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    progress("synthesising the corpus ...")
    calls = corpus(args.quick, args.speakers)
    receptionist = Receptionist()
    results: dict[str, Any] = {
        "benchmark": "turns",
        "mode": "quick" if args.quick else "full",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(),
        "code": code_version(PIPELINE),
        "settings": {
            "barge_after_s": BARGE_AFTER_S,
            "lines_per_call": LINES_PER_CALL,
            "speakers": args.speakers,
            "decision_pause_ms": args.pause_ms or "as shipped",
            "whisper_threads": os.environ.get("VOICEBRIDGE_WHISPER_THREADS", "2 (default)"),
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        pipelines = variant_pipelines(Path(tmp), args.pause_ms)
        services = {}
        for name, path in pipelines.items():
            progress(f"starting the service: {name} ...")
            services[name] = await start_service(path, out_dir / f"turns-{name}.log", 7200)
        lines: dict[str, list[LineResult]] = {name: [] for name in services}
        infos: list[dict[str, Any]] = []
        try:
            for i, call in enumerate(calls):
                for name, service in services.items():
                    watch = CpuWatch([service.pid])
                    got, info = await run_call(service, name, call, receptionist)
                    info["cpu"] = watch.result()
                    for r in got:
                        r.others_cpu_pct = info["cpu"]["others_pct_of_machine"]
                    lines[name].extend(got)
                    infos.append(info)
                    early = sum(r.premature for r in got)
                    lat = [r.latency_s for r in got if r.latency_s is not None]
                    p50 = f"{1000 * sorted(lat)[len(lat) // 2]:.0f} ms" if lat else "-"
                    progress(
                        f"  call {i + 1}/{len(calls)} {name:8s} {call[0].codec}: "
                        f"{len(got)} lines, premature {early}, latency p50 {p50}, "
                        f"others' CPU {info['cpu']['others_pct_of_machine']} %"
                    )
        finally:
            for service in services.values():
                await service.stop()
    results["variants"] = {name: summarise(rs) for name, rs in lines.items()}
    results["goals"] = {name: verdicts(s) for name, s in results["variants"].items()}
    results["calls"] = infos
    results["lines"] = {name: [dataclasses.asdict(r) for r in rs] for name, rs in lines.items()}
    others = [c["cpu"]["others_pct_of_machine"] for c in infos]
    results["others_cpu_pct"] = {
        "mean": round(sum(others) / len(others), 1) if others else None,
        "max": max(others) if others else None,
    }
    results["loadavg_at_end"] = list(os.getloadavg())
    results["code_changed_during_run"] = (
        code_version(PIPELINE)["sources_sha256"] != results["code"]["sources_sha256"]
    )
    results["duration_s"] = round(time.monotonic() - began, 1)
    return results


def markdown(results: dict[str, Any]) -> str:
    """The side-by-side table RESULTS.md quotes."""
    v = results["variants"]
    names = list(v)
    pauses = sorted({p for s in v.values() for p in s["by_pause"]}, key=int)
    out = [
        f"turns ({results['mode']}): {results['duration_s']:.0f} s; others' CPU "
        f"{results['others_cpu_pct']['mean']} % mean, {results['others_cpu_pct']['max']} % max",
        "",
        "| figure | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]

    def row(label: str, cell: Any) -> None:
        out.append(f"| {label} | " + " | ".join(str(cell(v[n])) for n in names) + " |")

    row("premature, pauses <= 1 s", lambda s: f"{s['premature_le_1s_pct']} %")
    row("premature, all pauses", lambda s: f"{s['premature_pct']} %")
    for p in pauses:
        row(
            f"premature / ended early, {p} ms pauses",
            lambda s, p=p: (
                f"{s['by_pause'][p]['premature']} / {s['by_pause'][p]['ended_early']}"
                f" of {s['by_pause'][p]['n']}"
            ),
        )
    for c in sorted({c for s in v.values() for c in s["by_category"]}):
        row(
            f"premature after {c}",
            lambda s, c=c: f"{s['by_category'][c]['premature']} of {s['by_category'][c]['n']}",
        )
    row(
        "end of speech -> first audio, p50 / p95 (complete)",
        lambda s: (
            f"{s['latency_ms']['p50']} / {s['latency_ms']['p95']} ms (n={s['latency_ms']['n']})"
        ),
    )
    row(
        f"... in calls with others' CPU < {QUIET_PCT:g} %",
        lambda s: "{p50} / {p95} ms (n={n})".format(**s["latency_quiet_ms"]),
    )
    row(
        "end of speech -> end of turn, p50 / p95",
        lambda s: f"{s['decided_ms']['p50']} / {s['decided_ms']['p95']} ms",
    )
    row(
        "complete lines cut off / unanswered",
        lambda s: f"{s['complete_ended_early']} / {s['complete_unanswered']}",
    )
    row("digit strings exact", lambda s: f"{s['digits_exact_pct']} % of {s['digits_n']}")
    row(
        "questions and statements on topic", lambda s: f"{s['on_topic_pct']} % of {s['on_topic_n']}"
    )
    out.append("")
    for name, goals in results["goals"].items():
        out.append(f"- {name}: " + "; ".join(f"{k} {val}" for k, val in goals.items()))
    return "\n".join(out) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(
            "Turn-taking over the WebSocket in real time, silence timer against the end-of-turn "
            "decision: premature replies by pause length, end of speech -> first audio, digit "
            "strings repeated exactly, replies on topic."
        )
    )
    p.add_argument("--quick", action="store_true", help="one short call per variant")
    p.add_argument(
        "--speakers",
        type=int,
        default=2,
        choices=range(1, len(SPEAKERS) + 1),
        help="voices per codec",
    )
    p.add_argument(
        "--pause-ms", type=int, help="the decision with whisper's speculative run at this pause"
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(run(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    sys.stdout.write(markdown(results))
    sys.stdout.write(f"\nJSON: {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
