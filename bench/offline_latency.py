"""Benchmark of the offline pipeline in real time: turn latency, model load, memory, concurrency.

The service runs in its own process (as in production) on a loopback port; simulated Plivo
callers run in this process and pace their 20 ms media frames at real time, so every latency
includes the compute. Virtual time (``simulate --fast``) leaves compute out, which is useless
here. The service process stamps each event of its per-call timeline with the wall clock, so
the time between the caller's end of speech and the first agent audio played can be split into
VAD, STT, dialogue and TTS.

Run from the repository root::

    PYTHONPATH=. python bench/offline_latency.py            # full run, about 10 minutes
    PYTHONPATH=. python bench/offline_latency.py --quick    # smoke run, under 2 minutes

Results go to ``bench/out/offline_latency.json`` and a markdown summary is printed. The only
network used is 127.0.0.1; every call, process and section is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script from anywhere: use this checkout

from bench.common import ServiceProcess, SessionReports, child_service, emit  # noqa: E402

DEFAULT_PIPELINE = REPO / "pipelines" / "offline.yaml"
DEFAULT_OUT = REPO / "bench" / "out" / "offline_latency.json"

GOAL_P50_S = 1.0
GOAL_P95_S = 1.5
STOP_P95_S = 3.0  # concurrency rounds stop once p95 passes this
CALL_TIMEOUT_S = 150.0  # one simulated call, greeting to hang-up
CALLER_PITCH = -2.0  # the caller's voice: the agent's, pitched down, without random variation
GAP_S = 0.8  # silence after the agent's audio that tells the caller it is its turn

# --- what the callers say -----------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One caller utterance and a piece of the reply that shows the right rule answered."""

    text: str
    expect: str


@dataclass(frozen=True)
class Script:
    name: str
    lines: tuple[Line, ...]


# Sequential latency calls: 22 turns over five calls, each ending with goodbye (agent hangs up).
LATENCY_SCRIPTS: tuple[Script, ...] = (
    Script(
        "hours-address",
        (
            Line("Hi, what time do you open tomorrow?", "open from"),
            Line("And what is your address?", "Harbor Street"),
            Line("Is there parking at the shop?", "parking"),
            Line("Great, that's all. Goodbye.", "Goodbye"),
        ),
    ),
    Script(
        "order-status",
        (
            Line("Can you check the status of my order?", "check an order"),
            Line("My order number is 4 5 7 1.", "out for delivery"),
            Line("When do you close on Saturday?", "open from"),
            Line("Okay, goodbye.", "Goodbye"),
        ),
    ),
    Script(
        "booking",
        (
            Line("I would like to book a cake for my daughter's birthday.", "booking"),
            Line("Where is the bakery located?", "Harbor Street"),
            Line("Are you open on Sundays?", "open from"),
            Line("Can I reserve a table for two?", "booking"),
            Line("Thank you, bye.", "Goodbye"),
        ),
    ),
    Script(
        "mixed",
        (
            Line("Hello, what are your opening hours?", "open from"),
            Line("Do you have parking?", "parking"),
            Line("Please check order 3 8 2 6.", "out for delivery"),
            Line("How do I find you from the ferry?", "Harbor Street"),
            Line("That's all, goodbye.", "Goodbye"),
        ),
    ),
    Script(
        "short",
        (
            Line("What time do you close today?", "open from"),
            Line("What's the address?", "Harbor Street"),
            Line("I want to book a table.", "booking"),
            Line("Goodbye.", "Goodbye"),
        ),
    ),
)

# Concurrent calls: three turns each (about 25-30 s), rotated so callers say different things.
CONCURRENT_SCRIPTS: tuple[Script, ...] = (
    Script(
        "c-location",
        (
            Line("Where are you located?", "Harbor Street"),
            Line("Is there parking?", "parking"),
            Line("Goodbye.", "Goodbye"),
        ),
    ),
    Script(
        "c-hours",
        (
            Line("What time do you close today?", "open from"),
            Line("Can I book a table for two?", "booking"),
            Line("Thanks, goodbye.", "Goodbye"),
        ),
    ),
    Script(
        "c-order",
        (
            Line("Can you check my order 5 2 9 4?", "out for delivery"),
            Line("What's your address?", "Harbor Street"),
            Line("Bye for now.", "Goodbye"),
        ),
    ),
    Script(
        "c-sunday",
        (
            Line("Are you open on Sunday?", "open from"),
            Line("I'd like to reserve a table.", "booking"),
            Line("That's all, goodbye.", "Goodbye"),
        ),
    ),
)

FULL_CONCURRENCY = (1, 2, 3, 4, 6, 8)
QUICK_CONCURRENCY = (2,)
STAGGER_WINDOW_S = 6.0  # concurrent calls start spread over this window, not in lockstep

# --- /proc readings -----------------------------------------------------------------------------


def status_kb(pid: int | str, key: str) -> int | None:
    """A ``kB`` field (VmRSS, VmHWM) of /proc/<pid>/status; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for row in f:
                if row.startswith(key + ":"):
                    return int(row.split()[1])
    except OSError:
        return None
    return None


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
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


class CpuWatch:
    """CPU used by our processes and by everything else over one section of the run.

    Other agents may be running tests on this machine; the share of CPU they took while we
    measured says how much to trust the figures.
    """

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = [os.getpid(), *pids]
        self.wall0 = time.monotonic()
        self.ours0 = {pid: cpu_ticks(pid) for pid in self.pids}
        self.busy0, self.total0 = machine_ticks()
        self.service0 = cpu_ticks(pids[0]) if pids else 0

    def result(self) -> dict[str, float]:
        hz = os.sysconf("SC_CLK_TCK")
        busy, total = machine_ticks()
        ours = sum(cpu_ticks(pid) - start for pid, start in self.ours0.items())
        span = max(total - self.total0, 1)
        wall = time.monotonic() - self.wall0
        service = (cpu_ticks(self.pids[1]) - self.service0) / hz if len(self.pids) > 1 else 0.0
        return {
            "wall_s": round(wall, 2),
            "service_cpu_s": round(service, 2),
            "service_cpu_pct_of_machine": round(100 * service * hz / span, 1),
            "ours_pct_of_machine": round(100 * ours / span, 1),
            "others_pct_of_machine": round(100 * max(busy - self.busy0 - ours, 0) / span, 1),
        }


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for row in f:
            if row.lower().startswith("model name"):
                model = row.split(":", 1)[1].strip()
                break
    mem_kb = status_mem_total_kb()
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "mem_total_mib": round(mem_kb / 1024) if mem_kb else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def status_mem_total_kb() -> int | None:
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as f:
        for row in f:
            if row.startswith("MemTotal:"):
                return int(row.split()[1])
    return None


def code_version(pipeline: Path) -> dict[str, Any]:
    """Which voicebridge was measured: commit, uncommitted changes, and a hash of the sources.

    Others may edit the checkout while the benchmark runs; a hash that differs at the end means
    the figures mix two versions of the code and the run should be repeated.
    """
    digest = hashlib.sha256()
    for path in [*sorted((REPO / "voicebridge").rglob("*.py")), pipeline]:
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

    dirty = git("status", "--porcelain", "--", "voicebridge", "pipelines").splitlines()
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": dirty,
        "sources_sha256": digest.hexdigest(),
    }


# --- child processes: the service, and a bare model preload ---------------------------------


async def child_serve(pipeline: Path, lifetime_s: float, t_main: float) -> None:
    """Run the real service on 127.0.0.1 and report each call's timeline when the call ends."""
    from voicebridge.config import load_pipeline
    from voicebridge.observe.logs import configure_logging

    configure_logging("json", "warning")
    spec = load_pipeline(pipeline)
    t_imported = time.monotonic()
    reports = SessionReports(
        lambda session, events: {"end_reason": session.end_reason, "events": events}
    )
    async with child_service(
        spec, lifetime_s, record_events=True, on_session=reports.on_session
    ) as child:
        child.ready(
            t_main=t_main,
            t_imported=t_imported,
            t_ready=time.monotonic(),
            rss_kb=status_kb("self", "VmRSS"),
        )
        await child.wait()
        await reports.flush()


async def child_preload(pipeline: Path, t_main: float) -> None:
    """Load the pipeline's models as the service does at start-up, timing each stage."""
    rss_start = status_kb("self", "VmRSS")
    from voicebridge.config import load_pipeline

    spec = load_pipeline(pipeline)  # resolves stage classes: imports faster-whisper and hibari
    t_imported = time.monotonic()
    rss_imported = status_kb("self", "VmRSS")
    stages: dict[str, float] = {}
    for stage in spec.stages:
        began = time.perf_counter()
        await stage.cls.preload(stage.params)
        took = time.perf_counter() - began
        if took >= 0.001:
            stages[stage.type] = round(took, 3)
    t_loaded = time.monotonic()
    emit(
        "preloaded",
        t_main=t_main,
        t_imported=t_imported,
        t_loaded=t_loaded,
        preload_s=round(t_loaded - t_imported, 3),
        stages=stages,
        rss_start_kb=rss_start,
        rss_imported_kb=rss_imported,
        rss_kb=status_kb("self", "VmRSS"),
        hwm_kb=status_kb("self", "VmHWM"),
    )


async def spawn_child(
    mode: str, pipeline: Path, log_path: Path, lifetime_s: float, ready_type: str
) -> ServiceProcess:
    """This script as a child (``serve`` or ``preload``), once it has said ``ready_type``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode]
    command += ["--pipeline", str(pipeline), "--lifetime", str(lifetime_s)]
    return await ServiceProcess.start(
        command, log_path, ready_type=ready_type, ready_timeout_s=120.0
    )


async def measure_preload(pipeline: Path, log_path: Path) -> dict[str, Any]:
    """One fresh process that only loads the models: ``spec.preload()`` time and RSS."""
    child = await spawn_child("preload", pipeline, log_path, 120.0, "preloaded")
    await child.stop()
    data = child.ready
    return {
        "interpreter_start_s": round(data["t_main"] - child.spawned, 3),
        "imports_and_pipeline_s": round(data["t_imported"] - data["t_main"], 3),
        "preload_s": data["preload_s"],
        "preload_by_stage_s": data["stages"],
        "start_to_models_loaded_s": round(data["t_loaded"] - child.spawned, 3),
        "rss_bare_mib": mib(data["rss_start_kb"]),
        "rss_after_imports_mib": mib(data["rss_imported_kb"]),
        "rss_after_preload_mib": mib(data["rss_kb"]),
        "hwm_after_preload_mib": mib(data["hwm_kb"]),
    }


def mib(kb: int | None) -> float | None:
    return round(kb / 1024, 1) if kb is not None else None


async def start_service(pipeline: Path, log_path: Path, lifetime_s: float) -> ServiceProcess:
    """The service in a child process, once it takes calls (models loaded and warmed up)."""
    return await spawn_child("serve", pipeline, log_path, lifetime_s, "ready")


def startup(service: ServiceProcess) -> dict[str, Any]:
    """Process start to ready (accepting calls, models loaded and warmed up)."""
    r, spawned = service.ready, service.spawned
    return {
        "interpreter_start_s": round(r["t_main"] - spawned, 3),
        "imports_and_pipeline_s": round(r["t_imported"] - r["t_main"], 3),
        "preload_and_listen_s": round(r["t_ready"] - r["t_imported"], 3),
        "start_to_ready_s": round(service.ready_at - spawned, 3),
        "rss_ready_mib": mib(r.get("rss_kb")),
    }


# --- one simulated call and its turns -----------------------------------------------------------


class VoiceCache:
    """The caller's lines as audio, synthesised once per text and rate before any call runs."""

    def __init__(self) -> None:
        self._audio: dict[tuple[str, int], Any] = {}

    def get(self, text: str, rate: int) -> Any:
        key = (text, rate)
        if key not in self._audio:
            from voicebridge.stages.tts.hibari import synthesize

            self._audio[key] = synthesize(text, rate, pitch_semitones=CALLER_PITCH)
        return self._audio[key]


@dataclass
class CallOutcome:
    script: str
    codec: str
    rate: int
    duration_s: float
    end: str
    protocol_errors: list[str]
    turns: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    service_rss_after_mib: float | None = None


def turn_breakdown(
    end_s: float, lo: float, hi: float, latency: float | None, events: Sequence[dict[str, Any]]
) -> dict[str, float | None]:
    """Where one turn's latency went, from the service's timeline.

    VAD: caller's end of speech to the VAD's SpeechEnded (stream time; includes the silence
    window). STT and dialogue: wall clock inside the service between speech_ended, the final
    transcript and the first agent text. TTS: first agent text to the first audio chunk sent,
    from the session's own ``turn_metrics`` (its ``tts_s`` + ``send_s``); with a session that
    has none, up to the first checkpoint (then sent right after a piece's audio). Other: the
    rest (socket, event-loop lag, playout start).
    """
    ended = transcript = agent = checkpoint = None
    for e in events:
        if not lo <= e["t"] < hi:
            continue
        kind = e.get("kind")
        if kind == "speech_ended" and agent is None:
            ended, transcript = e, None
        elif kind == "caller_said" and ended and transcript is None:
            transcript = e
        elif kind == "agent_text" and transcript and agent is None:
            agent = e
        elif kind == "checkpoint" and agent and checkpoint is None:
            checkpoint = e
    out: dict[str, float | None] = dict.fromkeys(
        ("vad_s", "vad_placed_s", "stt_s", "dialogue_s", "tts_first_audio_s", "other_s")
    )
    if ended is None:
        return out
    out["vad_s"] = round(ended["t"] - end_s, 3)
    out["vad_placed_s"] = round(float(ended["at"]) - end_s, 3)
    if transcript is None or "wall" not in ended:
        return out
    out["stt_s"] = round(transcript["wall"] - ended["wall"], 3)
    if agent is None:
        return out
    out["dialogue_s"] = round(agent["wall"] - transcript["wall"], 3)
    metrics = next(
        (
            e
            for e in events
            if e.get("kind") == "turn_played"
            and e.get("turn") == agent.get("turn")
            and e.get("tts_s") is not None
        ),
        None,
    )
    if metrics is not None:
        out["tts_first_audio_s"] = round(metrics["tts_s"] + (metrics.get("send_s") or 0.0), 3)
    elif checkpoint is not None:
        out["tts_first_audio_s"] = round(checkpoint["wall"] - agent["wall"], 3)
    if latency is not None and out["tts_first_audio_s"] is not None:
        inside = sum(out[k] or 0.0 for k in ("vad_s", "stt_s", "dialogue_s", "tts_first_audio_s"))
        out["other_s"] = round(latency - inside, 3)
    return out


async def run_call(
    service: ServiceProcess,
    codec: str,
    rate: int,
    script: Script,
    voices: VoiceCache,
    delay_s: float,
) -> CallOutcome:
    """One real-time call against the service; its turns with latency and breakdown."""
    from voicebridge.plivo.formats import StreamFormat
    from voicebridge.sim.analysis import report_from_parts
    from voicebridge.sim.caller import PlivoCaller
    from voicebridge.sim.simulate import CallerLine

    await asyncio.sleep(delay_s)
    fmt = StreamFormat.from_short(codec, rate)
    lines = [CallerLine(line.text, voices.get(line.text, rate)) for line in script.lines]
    caller = PlivoCaller(service.ws_url, fmt, speed=1.0)
    outcome = CallOutcome(script.name, codec, rate, 0.0, "", [])
    try:
        record = await asyncio.wait_for(
            caller.run_turns([line.pcm for line in lines], gap_s=GAP_S, reply_timeout_s=15.0),
            CALL_TIMEOUT_S,
        )
    except (TimeoutError, OSError) as exc:
        outcome.error = repr(exc)
        return outcome
    events = await service.events_for(record.stream_id)
    report = report_from_parts(
        pipeline="offline", record=record, lines=lines, mode="realtime", events=events
    )
    outcome.duration_s = round(report.duration_s, 2)
    outcome.end = f"{report.closed_by} {report.close_code} {report.close_reason}".strip()
    outcome.protocol_errors = list(report.protocol_errors)
    expected = {line.text: line.expect for line in script.lines}
    spoken = [t for t in report.turns if t.caller_speech_end_s is not None]
    for i, turn in enumerate(spoken):
        assert turn.caller_speech_end_s is not None and turn.caller_speech_start_s is not None
        hi = spoken[i + 1].caller_speech_start_s if i + 1 < len(spoken) else 1e9
        agent = " ".join(turn.agent_text)
        expect = expected.get(turn.caller_said or "", "")
        outcome.turns.append(
            {
                "said": turn.caller_said,
                "transcript": turn.transcript,
                "agent": agent,
                "as_expected": bool(expect) and expect.lower() in agent.lower(),
                "latency_s": turn.latency_s,
                **turn_breakdown(
                    turn.caller_speech_end_s,
                    turn.caller_speech_start_s,
                    hi or 1e9,
                    turn.latency_s,
                    events,
                ),
            }
        )
    return outcome


# --- statistics and sections ------------------------------------------------------------------


COMPONENTS = ("vad_s", "stt_s", "dialogue_s", "tts_first_audio_s", "other_s")


def stats(values: Sequence[float | None]) -> dict[str, Any]:
    """p50/p95/max/mean/n, rounded to the millisecond (the project's own percentile rule)."""
    from voicebridge.sim.report import latency_stats

    raw = latency_stats([v for v in values if v is not None])
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in raw.items()}


def summarise_turns(turns: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Latency statistics of a set of turns plus the mean and p50 of each component."""
    latency = stats([t["latency_s"] for t in turns])
    breakdown = {}
    for key in (*COMPONENTS, "vad_placed_s"):
        s = stats([t.get(key) for t in turns])
        breakdown[key] = {"mean": s["mean"], "p50": s["p50"], "p95": s["p95"], "n": s["n"]}
    return {
        "turns": len(turns),
        "unanswered": sum(1 for t in turns if t["latency_s"] is None),
        "as_expected": sum(1 for t in turns if t["as_expected"]),
        "latency": latency,
        "breakdown": breakdown,
    }


async def sequential_latency(
    pipeline: Path,
    codecs: Sequence[tuple[str, int]],
    scripts: Sequence[Script],
    voices: VoiceCache,
    out_dir: Path,
) -> dict[str, Any]:
    """Calls one at a time against one fresh service, the codecs alternating call by call.

    Alternating spreads any load from other processes over both codecs instead of one block.
    """
    service = await start_service(pipeline, out_dir / "service-sequential.log", 1200)
    result: dict[str, Any] = {
        "service_startup": startup(service),
        "service_rss_before_calls_mib": mib(status_kb(service.pid, "VmRSS")),
        "codecs": {},
    }
    calls: dict[str, list[CallOutcome]] = {f"{codec}_{rate}": [] for codec, rate in codecs}
    trace: list[float | None] = []  # service RSS after each call: does it keep growing?
    try:
        for script in scripts:
            for codec, rate in codecs:
                watch = CpuWatch([service.pid])
                outcome = await run_call(service, codec, rate, script, voices, 0.0)
                outcome.cpu = watch.result()
                outcome.service_rss_after_mib = mib(status_kb(service.pid, "VmRSS"))
                trace.append(outcome.service_rss_after_mib)
                calls[f"{codec}_{rate}"].append(outcome)
                lat = [t["latency_s"] for t in outcome.turns]
                shown = ", ".join(f"{v:.2f}" if v is not None else "-" for v in lat)
                progress(
                    f"  {codec} {rate}: {script.name}: latency s [{shown}]; "
                    f"others' CPU {outcome.cpu['others_pct_of_machine']} %"
                )
    finally:
        await service.stop()
    for name, outcomes in calls.items():
        turns = [t for c in outcomes for t in c.turns]
        others = [c.cpu["others_pct_of_machine"] for c in outcomes if c.cpu]
        result["codecs"][name] = {
            **summarise_turns(turns),
            "others_cpu_pct_mean": round(sum(others) / len(others), 1) if others else None,
            "others_cpu_pct_max": max(others) if others else None,
            "service_cpu_s": round(sum(c.cpu.get("service_cpu_s", 0.0) for c in outcomes), 2),
            "calls": [dataclasses.asdict(c) for c in outcomes],
        }
    result["service_rss_after_each_call_mib"] = trace
    return result


async def concurrency_round(
    pipeline: Path, n: int, voices: VoiceCache, out_dir: Path
) -> dict[str, Any]:
    """N real-time calls against one fresh service process; its RSS sampled as they run."""
    service = await start_service(pipeline, out_dir / f"service-concurrent-{n}.log", 600)
    idle_kb = status_kb(service.pid, "VmRSS")
    active = 0
    samples: list[tuple[int, int]] = []  # (calls in progress, RSS kB)

    async def one(i: int) -> CallOutcome:
        nonlocal active
        await asyncio.sleep(STAGGER_WINDOW_S * i / n)
        active += 1
        try:
            script = CONCURRENT_SCRIPTS[i % len(CONCURRENT_SCRIPTS)]
            return await run_call(service, "mulaw", 8000, script, voices, 0.0)
        finally:
            active -= 1

    async def sample() -> None:
        while True:
            rss = status_kb(service.pid, "VmRSS")
            if rss is not None:
                samples.append((active, rss))
            await asyncio.sleep(0.25)

    watch = CpuWatch([service.pid])
    sampler = asyncio.get_running_loop().create_task(sample())
    try:
        calls = await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        cpu = watch.result()
        hwm_kb = status_kb(service.pid, "VmHWM")
        await service.stop()
    turns = [t for c in calls for t in c.turns]
    full = [rss for count, rss in samples if count == n]
    return {
        "n": n,
        **summarise_turns(turns),
        "errors": [c.error for c in calls if c.error],
        "service_startup": startup(service),
        "rss_idle_mib": mib(idle_kb),
        "rss_all_calls_active_mib": mib(max(full)) if full else None,
        "rss_peak_mib": mib(max((rss for _, rss in samples), default=None)),
        "hwm_mib": mib(hwm_kb),
        "cpu": cpu,
        "calls": [dataclasses.asdict(c) for c in calls],
    }


def memory_growth(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """RSS with N calls in progress, and the least-squares growth per added call."""
    points = [
        (r["n"], r["rss_all_calls_active_mib"])
        for r in rounds
        if r.get("rss_all_calls_active_mib") is not None
    ]
    table = [
        {
            "n": r["n"],
            "rss_idle_mib": r["rss_idle_mib"],
            "rss_all_calls_active_mib": r["rss_all_calls_active_mib"],
            "rss_peak_mib": r["rss_peak_mib"],
        }
        for r in rounds
    ]
    slope = intercept = None
    if len(points) >= 2:
        xs = [float(x) for x, _ in points]
        ys = [float(y) for _, y in points]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        den = sum((x - mx) ** 2 for x in xs)
        if den:
            b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den
            slope, intercept = round(b, 2), round(my - b * mx, 1)
    # The intercept minus the idle RSS is what the first call's work allocates once (model
    # buffers, allocator caches), which later calls reuse; the slope is the per-call cost.
    return {"by_n": table, "growth_per_call_mib": slope, "fit_rss_at_zero_calls_mib": intercept}


def progress(text: str) -> None:
    """Progress on stderr, so stdout carries only the results."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# --- the report -------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return f"{value * 1000:.0f}" if value is not None else "-"


def markdown(results: dict[str, Any]) -> str:
    """The results as markdown tables (what RESULTS.md quotes)."""
    out: list[str] = []
    m = results["machine"]
    out.append(
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_total_mib']} MiB RAM, "
        f"Python {m['python']}; load average at start {m['loadavg_at_start'][0]:.2f}, "
        f"at end {results['loadavg_at_end'][0]:.2f}. Mode: {results['mode']}, "
        f"total run {results['duration_s']:.0f} s.\n"
    )
    code = results["code"]
    dirty = f", {len(code['dirty'])} uncommitted file(s) in voicebridge/" if code["dirty"] else ""
    out.append(f"Code: commit {code['commit'][:10]}{dirty}.\n")
    if results.get("code_changed_during_run"):
        out.append("**Warning: voicebridge's sources changed during the run; rerun.**\n")
    load = results.get("model_load") or {}
    runs = load.get("runs") or []
    if runs:
        out.append("Model load (fresh process each run):\n")
        out.append(
            "| run | interpreter start s | imports + pipeline s | preload s (whisper / hibari) "
            "| start to models loaded s | RSS after preload MiB |"
        )
        out.append("|---|---|---|---|---|---|")
        for i, r in enumerate(runs, 1):
            by = r["preload_by_stage_s"]
            out.append(
                f"| {i} | {r['interpreter_start_s']:.2f} | {r['imports_and_pipeline_s']:.2f} | "
                f"{r['preload_s']:.2f} ({by.get('whisper', 0):.2f} / {by.get('hibari', 0):.2f}) "
                f"| {r['start_to_models_loaded_s']:.2f} | {r['rss_after_preload_mib']} |"
            )
        out.append("")
    starts = load.get("service_starts") or []
    if starts:
        ready = [s["start_to_ready_s"] for s in starts]
        rss = [s["rss_ready_mib"] for s in starts if s["rss_ready_mib"] is not None]
        out.append(
            f"Service process start to ready (accepting calls, models loaded and warmed up): "
            f"median {sorted(ready)[len(ready) // 2]:.2f} s, min {min(ready):.2f} s, "
            f"max {max(ready):.2f} s over {len(ready)} starts; RSS when ready "
            f"{min(rss)}-{max(rss)} MiB.\n"
        )
    seq = results.get("sequential") or {}
    codecs = seq.get("codecs") or {}
    if codecs:
        out.append(
            "Turn latency, one call at a time (caller end of speech to first agent audio):\n"
        )
        out.append(
            "| codec | n | p50 ms | p95 ms | max ms | mean ms | answered as expected "
            "| others' CPU % mean (max) |"
        )
        out.append("|---|---|---|---|---|---|---|---|")
        for name, c in codecs.items():
            s = c["latency"]
            out.append(
                f"| {name} | {s['n']} | {ms(s['p50'])} | {ms(s['p95'])} | {ms(s['max'])} | "
                f"{ms(s['mean'])} | {c['as_expected']}/{c['turns']} | "
                f"{c['others_cpu_pct_mean']} ({c['others_cpu_pct_max']}) |"
            )
        out.append("")
        out.append("Where the time goes (ms, mean / p50 / p95 per turn):\n")
        out.append("| codec | VAD end-of-speech | STT (whisper) | dialogue | TTS first audio "
                   "| other (socket, playout) |")  # fmt: skip
        out.append("|---|---|---|---|---|---|")
        for name, c in codecs.items():
            b = c["breakdown"]
            cells = [
                f"{ms(b[k]['mean'])} / {ms(b[k]['p50'])} / {ms(b[k]['p95'])}" for k in COMPONENTS
            ]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        first = next(iter(codecs.values()))
        placed = first["breakdown"]["vad_placed_s"]["p50"]
        out.append(
            f"\nThe VAD placed the end of speech {ms(placed)} ms (p50) after the caller's real "
            f"end; the rest of the VAD column is the pipeline's `min_silence_ms` window.\n"
        )
    conc = results.get("concurrency") or {}
    rounds = conc.get("rounds") or []
    if rounds:
        out.append(
            "Concurrent calls (mulaw 8 kHz, one service process, starts spread over "
            f"{STAGGER_WINDOW_S:.0f} s):\n"
        )
        out.append(
            "| N | turns | p50 ms | p95 ms | max ms | STT p50 ms | service CPU % of machine "
            "| others' CPU % | RSS all active MiB |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for r in rounds:
            s = r["latency"]
            out.append(
                f"| {r['n']} | {s['n']} | {ms(s['p50'])} | {ms(s['p95'])} | {ms(s['max'])} | "
                f"{ms(r['breakdown']['stt_s']['p50'])} | "
                f"{r['cpu']['service_cpu_pct_of_machine']} | "
                f"{r['cpu']['others_pct_of_machine']} | {r['rss_all_calls_active_mib']} |"
            )
        best = conc.get("max_n_p95_under_goal")
        out.append(
            f"\nLargest N with p95 < {GOAL_P95_S} s: {best if best is not None else 'none'}"
            + (f" ({conc['stopped_early']})" if conc.get("stopped_early") else "")
            + ".\n"
        )
    mem = results.get("memory") or {}
    if mem.get("by_n"):
        out.append("Memory (service RSS):\n")
        out.append("| N calls in progress | RSS idle before calls MiB | RSS with N active MiB "
                   "| peak MiB |")  # fmt: skip
        out.append("|---|---|---|---|")
        for row in mem["by_n"]:
            out.append(
                f"| {row['n']} | {row['rss_idle_mib']} | {row['rss_all_calls_active_mib']} | "
                f"{row['rss_peak_mib']} |"
            )
        if mem["growth_per_call_mib"] is not None:
            out.append(
                f"\nGrowth per added call (least-squares slope over N): "
                f"{mem['growth_per_call_mib']} MiB; the fit's RSS at zero calls is "
                f"{mem['fit_rss_at_zero_calls_mib']} MiB (against idle "
                f"{mem['by_n'][0]['rss_idle_mib']} MiB: what the first call's work allocates "
                "once)."
            )
    fresh = mem.get("fresh_process_after_preload_mib")
    if fresh:
        out.append(f"Fresh process after preload (no service, no call): {fresh} MiB.")
    trace = seq.get("service_rss_after_each_call_mib")
    if trace:
        out.append(
            f"Service RSS during the one-at-a-time calls: {seq['service_rss_before_calls_mib']} "
            f"MiB before the first, then after each call {trace} MiB.\n"
        )
    goals = results.get("goals") or {}
    if goals:
        out.append("Goals (one call at a time): " + "; ".join(goals["verdicts"]) + ".")
    return "\n".join(out) + "\n"


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    """Whether p50 < 1.0 s and p95 < 1.5 s were met, per codec, one call at a time."""
    lines: list[str] = []
    for name, c in ((results.get("sequential") or {}).get("codecs") or {}).items():
        s = c["latency"]
        if s["p50"] is None:
            lines.append(f"{name}: no answered turns")
            continue
        p50_ok = s["p50"] < GOAL_P50_S
        p95_ok = s["p95"] < GOAL_P95_S
        lines.append(
            f"{name} p50 {ms(s['p50'])} ms {'meets' if p50_ok else 'misses'} < "
            f"{GOAL_P50_S * 1000:.0f} ms, p95 {ms(s['p95'])} ms "
            f"{'meets' if p95_ok else 'misses'} < {GOAL_P95_S * 1000:.0f} ms"
        )
    return {"p50_goal_s": GOAL_P50_S, "p95_goal_s": GOAL_P95_S, "verdicts": lines}


# --- main -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """All sections in order, each bounded; partial results survive a failing section."""
    began = time.monotonic()
    out_dir = Path(args.out).resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline = Path(args.pipeline).resolve()
    quick = args.quick
    results: dict[str, Any] = {
        "benchmark": "offline_latency",
        "mode": "quick" if quick else "full",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "pipeline": str(pipeline.relative_to(REPO) if pipeline.is_relative_to(REPO) else pipeline),
        "machine": machine_info(),
        "code": code_version(pipeline),
        "settings": {
            "gap_s": GAP_S,
            "caller_pitch_semitones": CALLER_PITCH,
            "stagger_window_s": STAGGER_WINDOW_S,
            "whisper_threads": os.environ.get("VOICEBRIDGE_WHISPER_THREADS", "2 (default)"),
        },
    }
    codecs = [("mulaw", 8000), ("l16", 16000)]
    latency_scripts = CONCURRENT_SCRIPTS[:1] if quick else LATENCY_SCRIPTS
    levels = QUICK_CONCURRENCY if quick else tuple(n for n in FULL_CONCURRENCY if n <= args.max_n)

    progress("synthesising the caller's lines ...")
    voices = VoiceCache()
    for script in (*latency_scripts, *CONCURRENT_SCRIPTS):
        for line in script.lines:
            for _, rate in codecs:
                voices.get(line.text, rate)

    progress("model load in fresh processes ...")
    runs = [
        await measure_preload(pipeline, out_dir / "preload.log") for _ in range(1 if quick else 3)
    ]
    results["model_load"] = {"runs": runs, "service_starts": []}

    progress("turn latency, one call at a time ...")
    seq = await sequential_latency(pipeline, codecs, latency_scripts, voices, out_dir)
    results["sequential"] = seq
    results["model_load"]["service_starts"].append(seq["service_startup"])

    progress("concurrent calls ...")
    rounds: list[dict[str, Any]] = []
    stopped = None
    for n in levels:
        elapsed = time.monotonic() - began
        if elapsed + 50 + STAGGER_WINDOW_S > args.budget_s:
            stopped = f"stopped before N={n}: time budget of {args.budget_s:.0f} s"
            break
        r = await concurrency_round(pipeline, n, voices, out_dir)
        rounds.append(r)
        results["model_load"]["service_starts"].append(r["service_startup"])
        s = r["latency"]
        progress(f"  N={n}: p50 {ms(s['p50'])} ms, p95 {ms(s['p95'])} ms, n={s['n']}")
        if s["p95"] is not None and s["p95"] > STOP_P95_S:
            stopped = f"stopped after N={n}: p95 above {STOP_P95_S:.0f} s"
            break
    best = None
    for r in rounds:
        p95 = r["latency"]["p95"]
        if p95 is None or p95 >= GOAL_P95_S or r["unanswered"]:
            break
        best = r["n"]
    results["concurrency"] = {
        "rounds": rounds,
        "max_n_p95_under_goal": best,
        "stopped_early": stopped,
    }
    results["memory"] = {
        "fresh_process_after_preload_mib": [r["rss_after_preload_mib"] for r in runs],
        **memory_growth(rounds),
    }
    results["goals"] = verdicts(results)
    results["loadavg_at_end"] = list(os.getloadavg())
    after = code_version(pipeline)
    results["code_at_end"] = after
    results["code_changed_during_run"] = (
        after["sources_sha256"] != results["code"]["sources_sha256"]
    )
    results["duration_s"] = round(time.monotonic() - began, 1)
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(
            "Benchmark the offline pipeline in real time against the real service on "
            "127.0.0.1: turn latency per codec with a breakdown, model load time, memory, and "
            "concurrent calls. Full run about 10 minutes; --quick under 2."
        )
    )
    p.add_argument("--quick", action="store_true", help="short smoke run (under 2 minutes)")
    p.add_argument("--pipeline", default=str(DEFAULT_PIPELINE), help="pipeline YAML")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file")
    p.add_argument(
        "--max-n", type=int, default=max(FULL_CONCURRENCY), help="largest concurrency tried"
    )
    p.add_argument(
        "--budget-s", type=float, default=900.0, help="skip concurrency rounds past this run time"
    )
    p.add_argument("--child", choices=["serve", "preload"], help=argparse.SUPPRESS)
    p.add_argument("--lifetime", type=float, default=900.0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    t_main = time.monotonic()
    args = parse_args(argv)
    if args.child == "serve":
        asyncio.run(child_serve(Path(args.pipeline), args.lifetime, t_main))
        return 0
    if args.child == "preload":
        asyncio.run(child_preload(Path(args.pipeline), t_main))
        return 0
    results = asyncio.run(run(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    sys.stdout.write(markdown(results))
    sys.stdout.write(f"\nJSON: {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
