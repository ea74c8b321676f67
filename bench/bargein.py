"""Barge-in benchmark (issue 4): reaction time under load, and which words the caller heard.

Part 1, **reaction under load.** N = 1, 10 and 50 concurrent calls against ONE service process
over real WebSockets on 127.0.0.1, callers in real time (speed 1.0). The pipeline has no models
(decode -> WebRTC VAD -> scripted transcriber -> scripted dialogue -> tone speaker -> encode), so
what is measured is the framework: socket, session, VAD, barge-in policy, clear. Each caller
talks over the agent a few times, each time 0.5-3.0 s (seeded) into the agent's speech, with ~1 s
of speech-like audio; the clock starts where the caller put its speech in its own track.
The service runs in a child process pinned to core 0 (``taskset -c 0``), the callers in this
process on core 1, so the load generator does not steal the service's CPU.

Part 2, **heard text.** On ``CallHarness`` (virtual time, exact), many random interruption
points in random replies; the words the session records as heard are checked against the words
whose audio had completely played when the clear reached the playout model. First with the
test tone speaker (timing known to the sample), then with the real Piper voice, whose word
timings come from Piper's own phoneme alignments (the voice's duration output, exposed by
adding it to the ONNX graph in memory), cross-checked against faster-whisper word timestamps.

Run from the repository root::

    PYTHONPATH=. python bench/bargein.py            # full run, about 8 minutes
    PYTHONPATH=. python bench/bargein.py --quick    # smoke run, under a minute

Results go to ``bench/out/bargein.json`` (and ``bargein.md``); a markdown summary is printed on
stdout, progress on stderr. Only 127.0.0.1 is used; every call, process and section is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import difflib
import hashlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import ServiceProcess, SessionReports, child_service  # noqa: E402

DEFAULT_OUT = REPO / "bench" / "out" / "bargein.json"

RATE = 8000
FRAME_S = 0.02
GUARD_MS = 200
SPEECH_S = 1.0  # each interruption: this much speech-like audio
WAIT_RANGE_S = (0.5, 3.0)  # how far into the agent's speech the caller starts talking
REPLY_START_S = 0.9  # after the caller stops, the reply starts within this (VAD 500 ms + slack)
STAGGER_S = 1.0  # concurrent calls start spread over this window
CALL_TIMEOUT_S = 90.0
VAD_PARAMS = {  # as in pipelines/offline.yaml
    "aggressiveness": 2,
    "min_speech_ms": 120,
    "min_silence_ms": 500,
    "pre_roll_ms": 240,
    "forward_audio": False,
}
GREETING = (
    "Thanks for calling the Harbor Street Bakery test line. We bake fresh bread every morning, "
    "and every cake is made to order. This week there is a special offer on sourdough loaves "
    "and apple pies. Please tell me how I can help you today."
)
REPLY = (
    "I see, let me look into that for you right away. Our team keeps a record of every order "
    "and booking, so this should only take a moment. While I check, you can also visit the shop "
    "on Harbor Street, next to the ferry terminal."
)
CALLER_LINE = "hold on a second please"

# Words for random agent replies: short function words to long ones, no digits.
_WORD_TEXT = """a an the to of and or but in on at for with from by about into over after before
we you they it this that these those our your their my his her its i me us them
can will would could should may might must shall do does did have has had is are was were be
been being get got make made take took give gave keep kept let put say said see saw know knew
think thought come came go went look find found tell told ask asked call called order booking
bread cake pie loaf loaves flour butter sugar coffee morning evening afternoon weekend today
tomorrow yesterday monday friday saturday sunday delivery address street harbor terminal
ferry parking table window garden kitchen counter oven basket customer colleague manager
team account payment receipt invoice question answer problem solution minute moment hour
quickly slowly carefully really usually probably certainly unfortunately absolutely
fresh warm sweet simple special available wonderful comfortable important different
beautiful expensive reasonable particular information reservation confirmation
recommendation appointment conversation understanding neighbourhood celebration
strawberry chocolate cinnamon raspberry blueberry vanilla caramel hazelnut almond
birthday wedding anniversary holiday picnic breakfast lunch dinner dessert sandwich
please thanks sorry hello goodbye yes no maybe sure okay right great fine good nice
"""
WORDS = _WORD_TEXT.split()


# --- small helpers ------------------------------------------------------------------------------


def progress(text: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (the smallest value with at least q % of samples at or below)."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q, method="inverted_cdf"))


def summary(values: Sequence[float | None]) -> dict[str, Any]:
    data = [float(v) for v in values if v is not None]
    if not data:
        return {"n": 0}
    return {
        "n": len(data),
        "p50": round(pct(data, 50) or 0.0, 1),
        "p95": round(pct(data, 95) or 0.0, 1),
        "p99": round(pct(data, 99) or 0.0, 1),
        "max": round(max(data), 1),
        "min": round(min(data), 1),
        "mean": round(float(np.mean(data)), 1),
    }


def pipeline_yaml(tts: str, *, greeting: str, reply: str, lines: Sequence[str]) -> str:
    """The benchmark's pipeline; ``tts`` is the speaker stage's YAML (one list item)."""
    vad = json.dumps(VAD_PARAMS)
    return f"""
name: bargein-bench
session:
  barge_in: {{guard_ms: {GUARD_MS}}}
stages:
  - type: decode
  - type: vad
    params: {vad}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: {json.dumps(list(lines))}}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{greeting: {json.dumps(greeting)}, reply: {json.dumps(reply)}}}
{tts}
  - type: encode
"""


def tone_yaml(ms_per_char: int = 50) -> str:
    return f"  - type: voicebridge.testing:ToneSpeaker\n    params: {{ms_per_char: {ms_per_char}}}"


PIPER_YAML = "  - type: piper"


# --- /proc readings -----------------------------------------------------------------------------


def cpu_ticks(pid: int | str) -> int:
    """utime + stime of a process in clock ticks (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            text = f.read()
    except OSError:
        return 0
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[11]) + int(rest[12])


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def machine_info() -> dict[str, Any]:
    model = platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for row in f:
            if row.lower().startswith("model name"):
                model = row.split(":", 1)[1].strip()
                break
    mem_mib = None
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as f:
        for row in f:
            if row.startswith("MemTotal:"):
                mem_mib = round(int(row.split()[1]) / 1024)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_total_mib": mem_mib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def code_version() -> dict[str, Any]:
    """Commit, uncommitted files and a hash of the sources (others may edit during the run)."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "voicebridge").rglob("*.py")):
        with contextlib.suppress(OSError):
            digest.update(str(path).encode())
            digest.update(path.read_bytes())

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": git("status", "--porcelain", "--", "voicebridge").splitlines(),
        "sources_sha256": digest.hexdigest(),
    }


# --- part 1: the service child ------------------------------------------------------------------


async def child_serve(lifetime_s: float) -> None:
    """The real service on 127.0.0.1 port 0; reports each call's barge-in events at its end."""
    from voicebridge.config import load_pipeline_text
    from voicebridge.observe.logs import configure_logging

    configure_logging("json", "warning")
    lines = [CALLER_LINE] * 20
    spec = load_pipeline_text(
        pipeline_yaml(tone_yaml(), greeting=GREETING, reply=REPLY, lines=lines)
    )
    kinds = {"speech_started", "speech_ended", "barge_in", "continued"}
    reports = SessionReports(
        lambda session, events: {"events": [e for e in events if e["kind"] in kinds]}
    )
    async with child_service(
        spec, lifetime_s, record_events=True, on_session=reports.on_session
    ) as child:
        child.ready()
        await child.wait()
        await reports.flush()


async def start_service(log_path: Path, lifetime_s: float, pin: bool) -> ServiceProcess:
    """This script as the service child (pinned to core 0 when taskset exists)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "serve"]
    command += ["--lifetime", str(lifetime_s)]
    return await ServiceProcess.start(command, log_path, pin=pin)


# --- part 1: the callers ------------------------------------------------------------------------


@dataclass
class CallPlan:
    """One caller's track: silence, then ~1 s of speech at each onset (stream seconds)."""

    name: str
    onsets: list[float]
    track: Any  # int16 PCM at RATE
    start_delay_s: float = 0.0


def make_plan(rng: random.Random, name: str, interruptions: int) -> CallPlan:
    from voicebridge.sim.signals import speech_like

    parts: list[Any] = []
    onsets: list[float] = []
    cursor = 0  # samples
    speech = speech_like(SPEECH_S, RATE)
    for j in range(interruptions):
        wait = rng.uniform(*WAIT_RANGE_S) + (REPLY_START_S if j else 0.0)
        onset = cursor + round(wait * RATE)
        parts.append(np.zeros(onset - cursor, np.int16))
        parts.append(speech)
        onsets.append(onset / RATE)
        cursor = onset + len(speech)
    parts.append(np.zeros(round(0.8 * RATE), np.int16))
    return CallPlan(name, onsets, np.concatenate(parts))


async def vad_offline(track: Any, encoding: str) -> list[dict[str, float]]:
    """Run the Vad stage alone over ``track`` (through the codec, as the service hears it):
    where it places each onset, and how much audio it needed before it said so."""
    from voicebridge.audio.codec import codec_for
    from voicebridge.call.context import CallContext, CallInfo
    from voicebridge.clock import VirtualClock
    from voicebridge.frames import AudioIn, Frame, SpeechStarted
    from voicebridge.stages.vad import Vad

    codec = codec_for(encoding)
    pcm = codec.decode(codec.encode(track))
    vad = Vad(**VAD_PARAMS)
    found: list[dict[str, float]] = []
    position = {"end_ms": 0.0}

    async def collect(frame: Frame) -> None:
        if isinstance(frame, SpeechStarted):
            found.append({"at_ms": frame.at_ms, "reported_ms": position["end_ms"]})

    ctx = CallContext(CallInfo(encoding=encoding, sample_rate=RATE), clock=VirtualClock())
    vad.bind(ctx, collect)
    step = round(RATE * FRAME_S)
    for offset in range(0, len(pcm) - step + 1, step):
        position["end_ms"] = (offset + step) * 1000.0 / RATE
        await vad.process(AudioIn(pcm[offset : offset + step], offset * 1000.0 / RATE))
    return found


@dataclass
class CallOutcome:
    plan: CallPlan
    stream_id: str = ""
    record: Any = None
    frame_wall: list[float] = field(default_factory=list)
    clear_wall: list[tuple[float, float]] = field(default_factory=list)
    error: str | None = None
    started_wall: float = 0.0
    ended_wall: float = 0.0


async def run_call(url: str, plan: CallPlan, encoding: str) -> CallOutcome:
    from voicebridge.plivo.formats import StreamFormat
    from voicebridge.sim.caller import PlivoCaller, WireEvent

    outcome = CallOutcome(plan)
    loop = asyncio.get_running_loop()

    async def probe(caller: PlivoCaller) -> None:
        outcome.frame_wall.append(loop.time())  # just before frame number len(frame_wall)-1

    def on_event(event: WireEvent) -> None:
        if event.direction == "out" and event.message.get("event") == "clearAudio":
            outcome.clear_wall.append((event.t, loop.time()))

    caller = PlivoCaller(
        url, StreamFormat(encoding, RATE), speed=1.0, on_event=on_event, probe=probe
    )
    outcome.stream_id = caller.record.stream_id
    outcome.started_wall = loop.time()
    try:
        outcome.record = await asyncio.wait_for(
            caller.run(plan.track, tail_s=0.3, wait_for_agent_s=0.6), CALL_TIMEOUT_S
        )
    except Exception as exc:  # one failed call is reported, not fatal
        outcome.error = repr(exc)
    outcome.ended_wall = loop.time()
    return outcome


def analyse_call(
    outcome: CallOutcome,
    server_events: list[dict[str, Any]],
    offline: list[dict[str, float]],
) -> list[dict[str, Any]]:
    """One row per planned interruption: the clear on the wire and where its time went."""
    rows: list[dict[str, Any]] = []
    guard = GUARD_MS / 1000.0
    starts = [e for e in server_events if e["kind"] == "speech_started"]
    clears = [e for e in server_events if e["kind"] == "barge_in"]
    spans = outcome.record.played_spans if outcome.record is not None else []
    frame_wall = outcome.frame_wall
    for j, onset in enumerate(outcome.plan.onsets):
        row: dict[str, Any] = {"call": outcome.plan.name, "j": j, "onset_s": round(onset, 4)}
        row["agent_speaking"] = any(s <= onset + 0.1 and s + d >= onset for s, d in spans)
        seen = [c for c in outcome.clear_wall if onset <= c[0] < onset + 1.5]
        live = [e for e in starts if onset - 0.05 <= e["at"] <= onset + 0.5]
        off = [v for v in offline if onset - 0.05 <= v["at_ms"] / 1000.0 <= onset + 0.5]
        if off:
            row["vad_offline_onset_ms"] = round(off[0]["at_ms"] - onset * 1000, 1)
            row["vad_offline_reported_ms"] = round(off[0]["reported_ms"] - onset * 1000, 1)
        if live:
            vad_at = live[0]["at"]
            row["vad_onset_ms"] = round((vad_at - onset) * 1000, 1)
            if off:
                row["vad_offline_agrees"] = abs(off[0]["at_ms"] / 1000.0 - vad_at) < 0.0015
            decided = [c for c in clears if vad_at + guard - 0.001 <= c["t"] <= vad_at + 1.5]
            if decided:
                decision = decided[0]
                row["decided_s"] = decision["t"]
                row["late_frames"] = round((decision["t"] - vad_at - guard) / FRAME_S)
                frame = round(decision["t"] / FRAME_S) - 1  # the frame that completed the guard
                if 0 <= frame < len(frame_wall):
                    sent = frame_wall[frame]
                    row["frame_sent_late_ms"] = round(
                        (sent - frame_wall[0] - frame * FRAME_S) * 1000, 1
                    )
                    row["in_ms"] = round((decision["wall"] - sent) * 1000, 2)
                    if seen:
                        row["out_ms"] = round((seen[0][1] - decision["wall"]) * 1000, 2)
                        row["framework_ms"] = round((seen[0][1] - sent) * 1000, 2)
                        # As in a real call, where a frame leaves once its 20 ms were captured:
                        # the end of the guard-completing frame, plus the framework's delay.
                        equiv = (decision["t"] - onset) * 1000 + row["framework_ms"]
                        row["equiv_ms"] = round(equiv, 1)
                        row["equiv_minus_guard_ms"] = round(equiv - GUARD_MS, 1)
        if seen:
            row["clear_t"] = seen[0][0]
            row["raw_ms"] = round((seen[0][0] - onset) * 1000, 1)
            row["minus_guard_ms"] = round(row["raw_ms"] - GUARD_MS, 1)
        rows.append(row)
    return rows


class CpuSampler:
    """Samples the service's CPU ticks and how many calls are active, every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.active = 0
        self.samples: list[tuple[float, int, int, int, int, int]] = []
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        busy, total = machine_ticks()
        self.samples.append(
            (time.monotonic(), cpu_ticks(self.pid), cpu_ticks("self"), busy, total, self.active)
        )

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.2)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self.sample()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def share(self, n: int | None = None) -> dict[str, Any]:
        """CPU over the whole round, or over the samples taken while ``n`` calls were active."""
        rows = self.samples if n is None else [s for s in self.samples if s[5] >= n]
        if len(rows) < 2:
            return {}
        hz = os.sysconf("SC_CLK_TCK")
        (w0, s0, o0, b0, t0, _), (w1, s1, o1, b1, t1, _) = rows[0], rows[-1]
        wall = w1 - w0
        machine = max(t1 - t0, 1)
        ours = (s1 - s0) + (o1 - o0)
        return {
            "wall_s": round(wall, 2),
            "service_pct_of_core": round(100 * (s1 - s0) / hz / wall, 1),
            "callers_pct_of_core": round(100 * (o1 - o0) / hz / wall, 1),
            "others_pct_of_machine": round(100 * max(b1 - b0 - ours, 0) / machine, 1),
        }


async def load_round(
    service: ServiceProcess, n: int, plans: list[CallPlan], encoding: str
) -> dict[str, Any]:
    sampler = CpuSampler(service.pid)
    sampler.start()

    async def one(plan: CallPlan) -> CallOutcome:
        await asyncio.sleep(plan.start_delay_s)
        sampler.active += 1
        try:
            return await run_call(service.ws_url, plan, encoding)
        finally:
            sampler.active -= 1

    began = time.monotonic()
    outcomes = await asyncio.gather(*(one(p) for p in plans))
    wall = time.monotonic() - began
    await sampler.stop()
    rows: list[dict[str, Any]] = []
    errors = []
    for outcome in outcomes:
        if outcome.error or outcome.record is None:
            errors.append(outcome.error)
            continue
        events = await service.events_for(outcome.stream_id, timeout_s=10.0)
        offline = await vad_offline(outcome.plan.track, encoding)
        rows += analyse_call(outcome, events, offline)
    return {
        "n": n,
        "calls": len(plans),
        "wall_s": round(wall, 2),
        "errors": errors,
        "cpu_round": sampler.share(),
        "cpu_all_active": sampler.share(n),
        "rows": rows,
    }


def plans_for(seed: int, n: int, round_index: int, interruptions: int) -> list[CallPlan]:
    plans = []
    for i in range(n):
        rng = random.Random(f"{seed}/{n}/{round_index}/{i}")
        plan = make_plan(rng, f"n{n}-r{round_index}-c{i}", interruptions)
        plan.start_delay_s = rng.uniform(0.0, STAGGER_S) if n > 1 else 0.0
        plans.append(plan)
    return plans


async def reaction_under_load(args: argparse.Namespace) -> dict[str, Any]:
    """Part 1: all levels against one service process."""
    encoding = "audio/x-mulaw"
    pinned_self = False
    original = os.sched_getaffinity(0)
    can_pin = shutil.which("taskset") is not None and {0, 1} <= original
    service = await start_service(
        Path(args.out).with_name("bargein-service.log"), lifetime_s=900.0, pin=can_pin
    )
    levels: list[dict[str, Any]] = []
    try:
        if can_pin:
            os.sched_setaffinity(0, {1})
            pinned_self = True
        progress(
            f"service pid {service.pid} on cores {service.affinity}, callers on cores "
            f"{sorted(os.sched_getaffinity(0))}"
        )
        # A warm-up call (imports, first connection) that is not measured.
        await load_round(service, 1, plans_for(args.seed + 999, 1, 0, 1), encoding)
        for n in args.levels:
            if n == 1:
                rounds = args.sequential_calls  # one call per round
            else:
                rounds = args.rounds_50 if n >= 50 else args.rounds_10
            merged: dict[str, Any] = {"n": n, "rounds": []}
            for r in range(rounds):
                plans = plans_for(args.seed, n, r, args.interruptions)
                result = await load_round(service, n, plans, encoding)
                merged["rounds"].append(result)
                done = [row for row in result["rows"] if "framework_ms" in row]
                progress(
                    f"N={n} round {r + 1}/{rounds}: {len(done)}/{len(result['rows'])} "
                    f"barge-ins cleared, {result['wall_s']} s, service CPU "
                    f"{result['cpu_all_active'].get('service_pct_of_core')} % of a core"
                )
            levels.append(summarise_level(merged))
    finally:
        if pinned_self:
            os.sched_setaffinity(0, original)
        await service.stop()
    return {
        "service_pinned": service.pinned,
        "service_affinity": service.affinity,
        "callers_pinned": pinned_self,
        "encoding": encoding,
        "levels": levels,
    }


def measured_late(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if "late_frames" in r]


def summarise_level(level: dict[str, Any]) -> dict[str, Any]:
    rows = [row for r in level["rounds"] for row in r["rows"]]
    measured = [row for row in rows if "raw_ms" in row]
    speaking = [row for row in rows if row["agent_speaking"]]

    def col(key: str, source: Sequence[dict[str, Any]] = measured) -> list[float]:
        return [row[key] for row in source if key in row]

    cpu = [r["cpu_all_active"] for r in level["rounds"] if r["cpu_all_active"]]
    cpu_round = [r["cpu_round"] for r in level["rounds"] if r["cpu_round"]]
    return {
        **level,
        "planned": len(rows),
        "agent_speaking_at_onset": len(speaking),
        "cleared": len(measured),
        "missing_clear_while_speaking": sum(1 for r in speaking if "raw_ms" not in r),
        "errors": [e for r in level["rounds"] for e in r["errors"]],
        "raw_ms": summary(col("raw_ms")),
        "minus_guard_ms": summary(col("minus_guard_ms")),
        "framework_ms": summary(col("framework_ms")),
        "equiv_ms": summary(col("equiv_ms")),
        "equiv_minus_guard_ms": summary(col("equiv_minus_guard_ms")),
        "in_ms": summary(col("in_ms")),
        "out_ms": summary(col("out_ms")),
        "vad_onset_ms": summary(col("vad_onset_ms", rows)),
        "vad_offline_reported_ms": summary(col("vad_offline_reported_ms", rows)),
        "vad_offline_agrees": sum(1 for r in rows if r.get("vad_offline_agrees")),
        "vad_compared": sum(1 for r in rows if "vad_offline_agrees" in r),
        "late_frames": dict(
            collections.Counter(r["late_frames"] for r in rows if "late_frames" in r)
        ),
        "frame_sent_late_ms": summary(col("frame_sent_late_ms")),
        "service_pct_of_core_all_active": max(
            (c["service_pct_of_core"] for c in cpu), default=None
        ),
        "cpu_all_active": cpu,
        "cpu_round": cpu_round,
    }


# --- part 2: heard text -------------------------------------------------------------------------


def random_text(rng: random.Random, sentences: int) -> str:
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
        words[0] = words[0].capitalize()
        words = [w.capitalize() if w == "i" else w for w in words]
        if len(words) > 5 and rng.random() < 0.3:
            at = rng.randint(2, len(words) - 3)
            words[at] += ","
        end = rng.choices([".", "?", "!"], [0.75, 0.2, 0.05])[0]
        out.append(" ".join(words) + end)
    return " ".join(out)


def piece_starts(call: Any) -> list[int]:
    """Sample offsets at which each piece of agent audio starts, from what went on the wire
    (a piece's audio, then its checkpoint)."""
    starts = [0]
    total = 0
    for m in call.log:
        event = m.message.get("event")
        if event == "playAudio":
            total += int(m.message["media"]["samples"])
        elif event == "checkpoint":
            starts.append(total)
    return starts


def heard_samples(call: Any) -> int:
    return sum(len(seg.pcm) for seg in call.playout.heard)


def recorded_words(call: Any) -> list[str]:
    ctx = call.session.ctx
    agent = [h for h in ctx.history if h.role == "agent"]
    return agent[0].text.split() if agent else []


async def interrupt_at(call: Any, onset_s: float, max_s: float = 1.6) -> float | None:
    """Caller silence until ``onset_s`` (to the sample), then speech until the clear goes out.
    Returns the clear's stream time, or None if none came."""
    from voicebridge.sim.signals import speech_like

    step = round(RATE * FRAME_S)
    whole = int(onset_s / FRAME_S + 1e-9)
    await call.idle((whole - round(call.t / FRAME_S)) * FRAME_S)
    lead = round(onset_s * RATE) - whole * step
    pcm = np.concatenate([np.zeros(lead, np.int16), speech_like(max_s, RATE)])
    for offset in range(0, len(pcm) - step + 1, step):
        await call.frame(pcm[offset : offset + step])
        clears = call.events("clearAudio")
        if clears:
            return float(clears[0].t)
        if call.session.ended.is_set():
            break
    return None


def score(words: list[str], ends: list[float], heard: int, recorded: list[str]) -> dict[str, Any]:
    """Compare what the session recorded with the words whose audio had completely played."""
    truth = 0
    while truth < len(ends) and ends[truth] <= heard:
        truth += 1
    prefix = recorded == words[: len(recorded)]
    counted = len(recorded)
    result = {
        "words": len(words),
        "truth": truth,
        "counted": counted,
        "diff": counted - truth,
        "over": max(0, counted - truth),
        "under": max(0, truth - counted),
        "prefix_ok": prefix,
    }
    if counted > truth:
        # how much of the last word counted as heard had not played yet
        result["unplayed_ms"] = round((ends[counted - 1] - heard) * 1000.0 / RATE, 1)
    return result


async def tone_trial(rng: random.Random, index: int) -> dict[str, Any]:
    from voicebridge.config import load_pipeline_text
    from voicebridge.testing.harness import CallHarness
    from voicebridge.text import split_sentences

    text = random_text(rng, rng.randint(1, 4))
    ms_per_char = rng.randint(30, 80)
    spec = load_pipeline_text(
        pipeline_yaml(tone_yaml(ms_per_char), greeting=text, reply="Okay.", lines=[CALLER_LINE])
    )
    per_char = RATE * ms_per_char // 1000
    words: list[str] = []
    ends: list[float] = []
    offset = 0
    for piece in split_sentences(text):
        position = offset
        for word in piece.split():
            words.append(word)
            ends.append(position + len(word) * per_char)
            position += (len(word) + 1) * per_char
        offset = position
    total_s = offset / RATE
    onset = rng.uniform(0.0, max(0.0, total_s - GUARD_MS / 1000.0 - 0.1))
    async with CallHarness(spec) as call:
        clear_t = await interrupt_at(call, onset)
        heard = heard_samples(call)
        recorded = recorded_words(call)
        starts = piece_starts(call)
    expected = [0]
    for piece in split_sentences(text):
        expected.append(expected[-1] + sum(len(w) + 1 for w in piece.split()) * per_char)
    row = {
        "i": index,
        "ms_per_char": ms_per_char,
        "onset_s": round(onset, 4),
        "clear_t": clear_t,
        "heard_s": round(heard / RATE, 4),
        "pieces_match_wire": starts == expected[: len(starts)],
        "text": text,
        **score(words, ends, heard, recorded),
    }
    return row


def summarise_trials(rows: list[dict[str, Any]]) -> dict[str, Any]:
    cleared = [r for r in rows if r.get("clear_t") is not None]
    over = [r for r in cleared if r["over"]]
    return {
        "trials": len(rows),
        "cleared": len(cleared),
        "trials_with_unplayed_word_counted": len(over),
        "unplayed_words_counted": sum(r["over"] for r in cleared),
        "played_words_not_counted": sum(r["under"] for r in cleared),
        "trials_missing_more_than_one": sum(1 for r in cleared if r["under"] > 1),
        "max_missed_in_a_trial": max((r["under"] for r in cleared), default=0),
        "histogram_counted_minus_truth": {
            str(k): v for k, v in sorted(collections.Counter(r["diff"] for r in cleared).items())
        },
        "unplayed_ms_of_overcounted": summary([r["unplayed_ms"] for r in over]),
        "prefix_ok": sum(1 for r in cleared if r["prefix_ok"]),
    }


async def tone_trials(count: int, seed: int) -> dict[str, Any]:
    rows = []
    began = time.monotonic()
    for i in range(count):
        rows.append(await tone_trial(random.Random(f"{seed}/tone/{i}"), i))
    result = summarise_trials(rows)
    result["pieces_match_wire"] = sum(1 for r in rows if r["pieces_match_wire"])
    result["seconds"] = round(time.monotonic() - began, 1)
    result["rows"] = rows
    return result


# --- part 2 with Piper: the voice's own phoneme alignments --------------------------------------

_PUNCT = set(",.;:!?¡¿—…\"'()")


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: memoryview, start: int, end: int) -> Any:
    """Top-level fields of a protobuf message: (number, tag_start, value_start, value_end, next)
    with value_start/value_end only for length-delimited fields."""
    i = start
    while i < end:
        tag_start = i
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i)
            yield number, tag_start, None, None, i
        elif wire == 1:
            i += 8
            yield number, tag_start, None, None, i
        elif wire == 5:
            i += 4
            yield number, tag_start, None, None, i
        elif wire == 2:
            length, j = _varint(buf, i)
            i = j + length
            yield number, tag_start, j, i, i
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")


def model_with_durations(data: bytes) -> bytes:
    """The voice's ONNX model with its phoneme-duration tensor (the graph's only ``Ceil``
    output) added as a second graph output, which is what Piper reads alignments from.

    Piper does this with the ``onnx`` package (not installed here); this edits the protobuf
    directly: ModelProto.graph (7) gets one more GraphProto.output (12) ValueInfoProto naming
    the tensor. Nothing else changes, so the audio is the same computation."""
    buf = memoryview(data)
    graph = next(f for f in _fields(buf, 0, len(buf)) if f[0] == 7)
    _, graph_tag, g_start, g_end, g_next = graph
    ceil: list[str] = []
    for number, _tag, start, end, _ in _fields(buf, g_start, g_end):
        if number != 1:  # GraphProto.node
            continue
        op, outputs = "", []
        for n2, _t2, s2, e2, _ in _fields(buf, start, end):
            if n2 == 4:  # NodeProto.op_type
                op = bytes(buf[s2:e2]).decode()
            elif n2 == 2:  # NodeProto.output
                outputs.append(bytes(buf[s2:e2]).decode())
        if op == "Ceil":
            ceil += outputs
    if len(ceil) != 1:
        raise RuntimeError(f"expected one Ceil tensor in the voice, found {ceil}")
    name = ceil[0].encode()
    value_info = _encode_varint((1 << 3) | 2) + _encode_varint(len(name)) + name
    output = _encode_varint((12 << 3) | 2) + _encode_varint(len(value_info)) + value_info
    new_graph = bytes(buf[g_start:g_end]) + output
    head = _encode_varint((7 << 3) | 2) + _encode_varint(len(new_graph))
    return bytes(buf[:graph_tag]) + head + new_graph + bytes(buf[g_next:])


@dataclass
class Render:
    """One synthesis by the piper stage: the text, its word end times, its audio."""

    text: str
    rate: int
    samples: int
    word_ends: list[int]  # at the voice's rate, one per whitespace word of ``text`` if aligned
    audio: Any


def install_aligning_voice() -> tuple[Any, list[Render]]:
    """Put a voice that records alignments into the piper stage's process-wide voice cache, so
    the real ``piper`` stage synthesises with it (same model, same code path)."""
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    from voicebridge.runtime.process_cache import ProcessCache
    from voicebridge.stages.offline_models import piper_voice_path
    from voicebridge.stages.tts import piper as piper_stage

    path = piper_voice_path()
    session = onnxruntime.InferenceSession(
        model_with_durations(path.read_bytes()), providers=["CPUExecutionProvider"]
    )
    config = PiperConfig.from_dict(
        json.loads(path.with_name(path.name + ".json").read_text("utf-8"))
    )
    renders: list[Render] = []

    class AligningVoice(PiperVoice):
        def synthesize(  # type: ignore[override]
            self, text: str, syn_config: Any = None, include_alignments: bool = False
        ) -> Any:
            chunks = list(super().synthesize(text, syn_config, include_alignments=True))
            renders.append(word_ends(text, chunks))
            yield from chunks

    voice = AligningVoice(session=session, config=config)
    key = piper_stage._voice_key(None, 0)
    load = piper_stage._load_voice  # any other voice loads as usual
    piper_stage._voices = ProcessCache(lambda asked: voice if asked == key else load(asked))
    return voice, renders


def word_ends(text: str, chunks: list[Any]) -> Render:
    """Word end samples from Piper's phoneme alignments: words are the phoneme groups between
    spaces; a word ends with its last phoneme that is not punctuation (pauses come after)."""
    ends: list[int] = []
    offset = 0
    audio = []
    for chunk in chunks:
        audio.append(chunk.audio_int16_array)
        position = offset
        current: int | None = None
        for a in chunk.phoneme_alignments or []:
            position += int(a.num_samples)
            if a.phoneme == " ":
                if current is not None:
                    ends.append(current)
                current = None
            elif a.phoneme not in _PUNCT and a.phoneme not in ("^", "$", "_"):
                current = position
        if current is not None:
            ends.append(current)
        offset += len(chunk.audio_int16_array)
    rate = chunks[0].sample_rate if chunks else 22050
    pcm = np.concatenate(audio) if audio else np.zeros(0, np.int16)
    return Render(text, rate, offset, ends, pcm)


def aligned_text(voice: Any, rng: random.Random, sentences: int) -> str | None:
    """A random reply whose every word espeak keeps as its own phoneme group (it merges some
    pairs, "of the" -> "ʌvðə", which would leave a word without its own end time)."""
    for _ in range(100):
        text = random_text(rng, sentences)
        ok = True
        from voicebridge.text import split_sentences

        for sentence in split_sentences(text):
            groups = sum(
                len([g for g in "".join(p).split(" ") if g.strip("".join(_PUNCT))])
                for p in voice.phonemize(sentence)
            )
            if groups != len(sentence.split()):
                ok = False
                break
        if ok:
            return text
    return None


async def piper_trial(
    voice: Any, renders: list[Render], rng: random.Random, index: int
) -> dict[str, Any] | None:
    from voicebridge.call.ledger import split_heard
    from voicebridge.config import load_pipeline_text
    from voicebridge.testing.harness import CallHarness
    from voicebridge.text import split_sentences

    text = aligned_text(voice, rng, rng.randint(1, 3))
    if text is None:
        return None
    pieces = split_sentences(text)
    spec = load_pipeline_text(
        pipeline_yaml(PIPER_YAML, greeting=text, reply="Okay.", lines=[CALLER_LINE])
    )
    renders.clear()
    async with CallHarness(spec) as call:
        # Starting the call let every piece be synthesised before time moved on.
        made = [r for r in renders if r.text in pieces]
        by_text = {r.text: r for r in made}
        if any(p not in by_text for p in pieces) or any(
            len(by_text[p].word_ends) != len(p.split()) for p in pieces
        ):
            return {"i": index, "text": text, "skipped": "alignment did not cover every word"}
        lengths = [round(by_text[p].samples * RATE / by_text[p].rate) for p in pieces]
        total_s = sum(lengths) / RATE
        onset = rng.uniform(0.0, max(0.0, total_s - GUARD_MS / 1000.0 - 0.1))
        clear_t = await interrupt_at(call, onset)
        heard = heard_samples(call)
        recorded = recorded_words(call)
        starts = piece_starts(call)
    words: list[str] = []
    ends: list[float] = []
    for k, piece in enumerate(pieces):
        render = by_text[piece]
        base = starts[k] if k < len(starts) else sum(lengths[:k])
        for word, end in zip(piece.split(), render.word_ends, strict=True):
            words.append(word)
            ends.append(base + end * RATE / render.rate)
    row: dict[str, Any] = {
        "i": index,
        "text": text,
        "onset_s": round(onset, 4),
        "clear_t": clear_t,
        "heard_s": round(heard / RATE, 4),
        **score(words, ends, heard, recorded),
    }
    # What alternatives would have recorded, from the same interruption point.
    k = max(i for i, s in enumerate(starts[: len(pieces)]) if s <= heard)
    k = min(k, len(pieces) - 1)
    piece, render = pieces[k], by_text[pieces[k]]
    into = heard - starts[k]
    length = starts[k + 1] - starts[k] if k + 1 < len(starts) else lengths[k]
    before = sum(len(p.split()) for p in pieces[:k])
    row["piece"] = k
    row["into_piece_s"] = round(into / RATE, 4)
    row["piece_s"] = round(length / RATE, 4)
    variants: dict[str, int] = {}
    variants["chars"] = len(split_heard(piece, into / length)[0])
    for margin_ms in (50, 100, 150, 200):
        fraction = max(0.0, into - margin_ms * RATE / 1000) / length
        variants[f"chars_margin_{margin_ms}ms"] = len(split_heard(piece, fraction)[0])
    lead, tail = speech_bounds(render)
    span = max(tail - lead, 1e-6)
    fraction = min(1.0, max(0.0, (into / RATE - lead) / span))
    variants["chars_trimmed"] = len(split_heard(piece, fraction)[0])
    truth_in_piece = row["truth"] - before
    row["variants"] = {
        name: {"counted": count, "diff": count - truth_in_piece} for name, count in variants.items()
    }
    row["session_matches_chars"] = row["counted"] - before == variants["chars"]
    return row


def speech_bounds(render: Render) -> tuple[float, float]:
    """Seconds of leading silence, and where the last sound ends, in a render (-40 dB of its
    peak over 10 ms windows)."""
    pcm = render.audio.astype(np.float64)
    win = max(1, render.rate // 100)
    usable = len(pcm) // win * win
    if usable == 0:
        return 0.0, len(pcm) / render.rate
    rms = np.sqrt((pcm[:usable].reshape(-1, win) ** 2).mean(axis=1))
    loud = np.nonzero(rms > rms.max() * 0.01)[0]
    if not len(loud):
        return 0.0, len(pcm) / render.rate
    return loud[0] * win / render.rate, (loud[-1] + 1) * win / render.rate


def whisper_check(samples: list[Render], limit: int) -> dict[str, Any]:
    """Word end times by faster-whisper (tiny.en, int8, word timestamps) against Piper's
    alignments, on the same audio: how far apart the two ground truths are."""
    from faster_whisper import WhisperModel

    from voicebridge.audio.resample import resample
    from voicebridge.stages.offline_models import whisper_model_dir

    model = WhisperModel(str(whisper_model_dir()), device="cpu", compute_type="int8")
    diffs: list[float] = []
    pieces = 0
    words_total = 0
    for render in samples[:limit]:
        audio = resample(render.audio, render.rate, 16000).astype(np.float32) / 32768.0
        segments, _ = model.transcribe(audio, word_timestamps=True, language="en", beam_size=1)
        got = [w for s in segments for w in (s.words or [])]
        norm = [re.sub(r"[^a-z']", "", w.word.lower()) for w in got]
        want = [re.sub(r"[^a-z']", "", w.lower()) for w in render.text.split()]
        pieces += 1
        words_total += len(want)
        # Compare only the words whisper heard as written (random word salad trips it up).
        matcher = difflib.SequenceMatcher(a=want, b=norm, autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                end = render.word_ends[block.a + k] / render.rate
                diffs.append((got[block.b + k].end - end) * 1000.0)
    return {
        "pieces": pieces,
        "words": words_total,
        "words_compared": len(diffs),
        "whisper_minus_alignment_end_ms": summary(diffs),
        "abs_diff_ms": summary([abs(d) for d in diffs]),
    }


async def piper_trials(count: int, seed: int, whisper_pieces: int) -> dict[str, Any]:
    began = time.monotonic()
    voice, renders = install_aligning_voice()
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    kept: list[Render] = []
    for i in range(count):
        row = await piper_trial(voice, renders, random.Random(f"{seed}/piper/{i}"), i)
        if row is None or "skipped" in row:
            skipped.append(row or {"i": i, "skipped": "no text espeak keeps word by word"})
            continue
        rows.append(row)
        kept += renders[: max(0, whisper_pieces - len(kept))]
        if (i + 1) % 10 == 0:
            progress(f"piper trials: {i + 1}/{count}")
    result = summarise_trials(rows)
    variants: dict[str, dict[str, Any]] = {}
    cleared = [r for r in rows if r.get("clear_t") is not None]
    for name in cleared[0]["variants"] if cleared else []:
        diffs = [r["variants"][name]["diff"] for r in cleared]
        variants[name] = {
            "trials_over": sum(1 for d in diffs if d > 0),
            "words_over": sum(d for d in diffs if d > 0),
            "words_under": -sum(d for d in diffs if d < 0),
            "trials_under_more_than_one": sum(1 for d in diffs if d < -1),
        }
    result["variants"] = variants
    result["session_matches_chars"] = sum(1 for r in cleared if r["session_matches_chars"])
    result["skipped"] = skipped
    result["whisper_check"] = whisper_check(kept, whisper_pieces) if whisper_pieces else None
    result["seconds"] = round(time.monotonic() - began, 1)
    result["rows"] = rows
    return result


# --- report -------------------------------------------------------------------------------------


def fmt4(s: dict[str, Any]) -> str:
    if not s.get("n"):
        return "-"
    return f"{s['p50']:.0f} / {s['p95']:.0f} / {s['p99']:.0f} / {s['max']:.0f}"


def fmt4f(s: dict[str, Any]) -> str:
    if not s.get("n"):
        return "-"
    return f"{s['p50']:.1f} / {s['p95']:.1f} / {s['p99']:.1f} / {s['max']:.1f}"


def markdown(results: dict[str, Any]) -> str:
    out: list[str] = []
    part1 = results.get("reaction")
    if part1:
        out.append("### Barge-in reaction under load (real time, one service process)\n")
        out.append(
            "ms, p50 / p95 / p99 / max. *Caller record*: clearAudio's time in the caller's "
            "record (stream time, 20 ms steps: the start of the frame the caller was sending) "
            "minus where it put its speech. *Real-call equivalent*: the end of the media frame "
            f"that completed the {GUARD_MS} ms guard (a real frame leaves once its 20 ms are "
            "captured) minus the onset, plus the framework delay. *Framework delay*: wall "
            "clock, the caller sending that frame to clearAudio arriving back at the caller.\n"
        )
        out.append(
            "| calls | cleared / planned | caller record: onset → clear | minus guard | "
            "real-call equivalent: onset → clear | minus guard |"
        )
        out.append("|---|---|---|---|---|---|")
        for lv in part1["levels"]:
            out.append(
                f"| {lv['n']} | {lv['cleared']} / {lv['planned']} | {fmt4(lv['raw_ms'])} | "
                f"{fmt4(lv['minus_guard_ms'])} | {fmt4(lv['equiv_ms'])} | "
                f"{fmt4(lv['equiv_minus_guard_ms'])} |"
            )
        out.append("")
        out.append(
            "| calls | framework delay (wall) | frame sent → service sent clear | service → "
            "caller | service CPU, % of its core | callers' CPU, % of their core |"
        )
        out.append("|---|---|---|---|---|---|")
        for lv in part1["levels"]:
            callers = max((c["callers_pct_of_core"] for c in lv["cpu_all_active"]), default=None)
            out.append(
                f"| {lv['n']} | {fmt4f(lv['framework_ms'])} | {fmt4f(lv['in_ms'])} | "
                f"{fmt4f(lv['out_ms'])} | {lv['service_pct_of_core_all_active']} | {callers} |"
            )
        out.append("")
        out.append(
            "| calls | VAD onset minus real onset (ms, p50 / min..max) | VAD reported after "
            "(ms, p50 / max) | live VAD = offline VAD | clear decided late by frames | "
            "caller frames sent late (ms, p99 / max) | others' CPU, % of machine, max (mean) |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for lv in part1["levels"]:
            v, rep, late = lv["vad_onset_ms"], lv["vad_offline_reported_ms"], lv["late_frames"]
            fl = lv["frame_sent_late_ms"]
            shares = [c.get("others_pct_of_machine") or 0.0 for c in lv["cpu_all_active"]]
            others = f"{max(shares, default=0):.0f} ({np.mean(shares or [0]):.0f})"
            out.append(
                f"| {lv['n']} | {v.get('p50')} / {v.get('min')}..{v.get('max')} | "
                f"{rep.get('p50')} / {rep.get('max')} | {lv['vad_offline_agrees']}/"
                f"{lv['vad_compared']} | {late} | {fl.get('p99')} / {fl.get('max')} | "
                f"{others} |"
            )
        out.append("")
    for key, title in (("tone", "test tone speaker"), ("piper", "Piper en_US-joe-medium")):
        part = results.get(key)
        if not part:
            continue
        out.append(f"### Heard text, {title} ({part['trials']} random interruptions)\n")
        out.append(
            "| trials cleared | trials with an unplayed word counted as heard | such words | "
            "by how much (ms of the word still to play, p50 / max) | played words not counted "
            "| trials missing > 1 | counted - truth histogram |"
        )
        out.append("|---|---|---|---|---|---|---|")
        u = part["unplayed_ms_of_overcounted"]
        out.append(
            f"| {part['cleared']} | {part['trials_with_unplayed_word_counted']} | "
            f"{part['unplayed_words_counted']} | "
            f"{(str(u['p50']) + ' / ' + str(u['max'])) if u.get('n') else '-'} | "
            f"{part['played_words_not_counted']} | {part['trials_missing_more_than_one']} | "
            f"{part['histogram_counted_minus_truth']} |"
        )
        out.append("")
        if key == "piper" and part.get("variants"):
            out.append("What other estimates would have recorded at the same interruptions:\n")
            out.append(
                "| estimate | trials over | words over | words under | trials under by > 1 |"
            )
            out.append("|---|---|---|---|---|")
            for name, v in part["variants"].items():
                out.append(
                    f"| {name} | {v['trials_over']} | {v['words_over']} | {v['words_under']} "
                    f"| {v['trials_under_more_than_one']} |"
                )
            out.append("")
            w = part.get("whisper_check")
            if w:
                d, a = w["whisper_minus_alignment_end_ms"], w["abs_diff_ms"]
                out.append(
                    f"Whisper cross-check: {w['pieces']} pieces, {w['words_compared']} of "
                    f"{w['words']} words transcribed as written and compared; whisper word end "
                    f"- alignment word end p50 {d.get('p50')} ms, "
                    f"|diff| p50 {a.get('p50')} / p95 {a.get('p95')} / max {a.get('max')} ms.\n"
                )
    return "\n".join(out)


# --- main ---------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from voicebridge.observe.logs import configure_logging

    configure_logging("console", "warning")
    began = time.monotonic()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "code_start": code_version(),
        "args": {k: v for k, v in vars(args).items() if k not in ("child",)},
        "guard_ms": GUARD_MS,
        "vad": VAD_PARAMS,
    }
    if not args.skip_load:
        progress(f"part 1: reaction under load, N = {args.levels}")
        results["reaction"] = await reaction_under_load(args)
    progress(f"part 2: heard text, {args.tone_trials} tone-speaker trials")
    results["tone"] = await tone_trials(args.tone_trials, args.seed)
    progress(f"tone trials done in {results['tone']['seconds']} s")
    if args.piper_trials:
        progress(f"part 2: heard text, {args.piper_trials} Piper trials")
        results["piper"] = await piper_trials(args.piper_trials, args.seed, args.whisper_pieces)
        progress(f"Piper trials done in {results['piper']['seconds']} s")
    results["code_end"] = code_version()
    results["runtime_s"] = round(time.monotonic() - began, 1)
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Barge-in benchmark: clearAudio reaction under load (real WebSockets, "
        "real time) and heard-text accuracy over random interruptions (virtual time).",
    )
    p.add_argument("--quick", action="store_true", help="short smoke run (under a minute)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file")
    p.add_argument("--seed", type=int, default=4, help="seed of every random choice")
    p.add_argument("--levels", default="1,10,50", help="concurrent calls per round, e.g. 1,10,50")
    p.add_argument("--interruptions", type=int, default=3, help="barge-ins per call")
    p.add_argument("--sequential-calls", type=int, default=8, help="calls at N=1, one at a time")
    p.add_argument("--rounds-10", type=int, default=3, help="rounds at N=10")
    p.add_argument("--rounds-50", type=int, default=2, help="rounds at N=50 (and above)")
    p.add_argument("--tone-trials", type=int, default=1000, help="tone-speaker interruptions")
    p.add_argument("--piper-trials", type=int, default=500, help="Piper interruptions (0: skip)")
    p.add_argument("--whisper-pieces", type=int, default=20, help="pieces to cross-check")
    p.add_argument("--skip-load", action="store_true", help="only part 2 (heard text)")
    p.add_argument("--child", choices=["serve"], help=argparse.SUPPRESS)
    p.add_argument("--lifetime", type=float, default=900.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.levels = "1,10"
        args.interruptions = 2
        args.sequential_calls = 2
        args.rounds_10 = 1
        args.tone_trials = min(args.tone_trials, 60)
        args.piper_trials = min(args.piper_trials, 8)
        args.whisper_pieces = min(args.whisper_pieces, 4)
    args.levels = [int(x) for x in str(args.levels).split(",") if x.strip()]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child == "serve":
        asyncio.run(child_serve(args.lifetime))
        return 0
    results = asyncio.run(run(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    text = markdown(results)
    out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    print(text)
    progress(f"wrote {out} ({results['runtime_s']} s)")
    if results["code_start"]["sources_sha256"] != results["code_end"]["sources_sha256"]:
        changed = sorted(set(results["code_end"]["dirty"]) ^ set(results["code_start"]["dirty"]))
        progress(
            "WARNING: voicebridge sources changed during the run (status changes: "
            f"{changed or 'none, files edited'}); check they are off the measured path"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
