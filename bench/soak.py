"""Soak benchmark (issue 7): many concurrent calls for a long time, with calls churning.

N simulated Plivo callers (default 100) talk to ONE service process over real WebSockets on
127.0.0.1 for ``--duration`` seconds (default 600). Each caller runs a short conversation (the
agent's greeting, then three lines, each answered), hangs up (or is hung up on, when its last
line is "goodbye") and is replaced at once by a new call, so thousands of calls start and end.
Every provider is a zero-latency fake (scripted transcriber, scripted dialogue, tone speaker from
``voicebridge.testing.harness``) behind the real WebRTC VAD: what is measured is the framework's own
resource use over time, not a model's.

Every few seconds it samples the service's RSS and open file descriptors (``/proc/<pid>``) and,
from the service itself, its asyncio task count and active calls. A call fails when it raises,
gets a protocol error, is closed with a code other than 1000, or misses a reply. At the end the
load stops, every call must be gone (``/health`` ``active_calls`` 0) and the task and fd counts
must be back at their idle level of the start.

**The load generator as callers** (``--driver loadgen``, issue 16): for hundreds of calls the
callers are ``bench/loadgen.py``'s light ones, in worker processes pinned to core 1 (the service
to core 0), against the capacity benchmark's call flow (``bench/vb_server.py``: the caller asks,
is answered, talks over the answer; 20 s calls, back to back in each of N slots). A call fails
when it errs, is closed with a code other than 1000, or misses a reply. The generator's own
lateness is recorded. The summary gives how flat memory stayed: the RSS slope over the steady
part in MB/min and in kB per 1000 calls served.

Run from the repository root::

    PYTHONPATH=. python bench/soak.py                       # full run: 100 calls, 10 minutes
    PYTHONPATH=. python bench/soak.py --duration 60         # validation run
    PYTHONPATH=. python bench/soak.py --driver loadgen --calls 300 --out bench/out/soak-300.json
    PYTHONPATH=. python bench/soak.py --help

Results: ``bench/out/soak.json`` (every sample) and ``bench/out/soak.md`` (tables, also on
stdout); progress on stderr; the service's warnings in ``bench/out/soak-service.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.bargein import code_version, cpu_ticks, machine_info, machine_ticks, progress  # noqa: E402
from bench.common import ServiceProcess, child_service, emit  # noqa: E402

DEFAULT_OUT = REPO / "bench" / "out" / "soak.json"
RATE = 8000
ENCODING = "audio/x-mulaw"
LINES = ["tell me about the opening hours", "and where is the shop", "thank you goodbye"]
GREETING = "Hello, this is the soak test line. How can I help?"
REPLY = "Sure. Here is what I know about that."
CALL_LIMIT_S = 120.0  # one call may not take longer than this

PIPELINE = f"""
name: soak-bench
session:
  barge_in: {{guard_ms: 200}}
stages:
  - type: decode
  - type: vad
    params: {{aggressiveness: 2, min_speech_ms: 120, min_silence_ms: 500, pre_roll_ms: 240,
              forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: {json.dumps(LINES)}}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{greeting: {json.dumps(GREETING)}, reply: {json.dumps(REPLY)}}}
  - type: voicebridge.testing:ToneSpeaker
    params: {{ms_per_char: 20}}
  - type: encode
"""


# --- the service child --------------------------------------------------------------------------


async def child_serve(lifetime_s: float, sample_s: float, flow: str = "scripted") -> None:
    """The real service on 127.0.0.1 port 0 (``flow``: this script's scripted pipeline, or
    ``capacity``, the capacity benchmark's call flow). Every ``sample_s`` it reports its asyncio
    task count, live calls and how the ended calls ended."""
    from voicebridge.config import load_pipeline_text
    from voicebridge.observe.logs import configure_logging
    from voicebridge.session import Session

    configure_logging("json", "warning")
    if flow == "capacity":
        from bench.vb_server import pipeline_yaml

        spec = load_pipeline_text(pipeline_yaml(1.0, probed=False))
    else:
        spec = load_pipeline_text(PIPELINE)
    loop = asyncio.get_running_loop()
    ended: collections.Counter[str] = collections.Counter()
    totals: collections.Counter[str] = collections.Counter()
    watchers: set[asyncio.Task[None]] = set()

    async def watch(session: Session) -> None:
        await session.ended.wait()
        ended[session.end_reason or "?"] += 1
        for key in ("bad_messages", "provider_errors", "ignored_acks", "clears"):
            totals[key] += session.core.stats.as_dict().get(key, 0)

    def on_session(session: Session) -> None:
        task = loop.create_task(watch(session))
        watchers.add(task)
        task.add_done_callback(watchers.discard)

    async with child_service(
        spec, lifetime_s, max_calls=1000, max_pending=1000, on_session=on_session
    ) as child:
        calls = child.svc.app.state.calls
        child.ready()
        while not child.stopping:
            emit(
                "stats",
                wall=time.monotonic(),
                # the watcher tasks are this benchmark's, not the service's
                tasks=len(asyncio.all_tasks()) - len(watchers),
                active_calls=len(calls),
                total_calls=calls.total,
                refused=calls.refused,
                ended=dict(ended),
                totals=dict(totals),
            )
            await child.wait(sample_s)


async def start_service(
    log_path: Path, lifetime_s: float, sample_s: float, flow: str = "scripted", pin: bool = False
) -> ServiceProcess:
    """This script as the service child; its ``stats`` reports land in ``service.last``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "serve"]
    command += ["--lifetime", str(lifetime_s), "--sample-s", str(sample_s), "--flow", flow]
    return await ServiceProcess.start(command, log_path, pin=pin)


# --- the callers --------------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    reason: str
    seconds: float
    turns: int
    closed_by: str


def caller_track(rng: random.Random) -> list[Any]:
    """0.8-1.4 s of speech-like audio per line (seeded). Half the callers say all three lines
    (the last is "goodbye": the agent hangs up); the others hang up after two."""
    from voicebridge.sim.signals import speech_like

    lines = len(LINES) if rng.random() < 0.5 else len(LINES) - 1
    return [speech_like(rng.uniform(0.8, 1.4), RATE) for _ in range(lines)]


async def one_call(url: str, rng: random.Random) -> Outcome:
    from voicebridge.plivo.formats import StreamFormat
    from voicebridge.sim.caller import PlivoCaller

    caller = PlivoCaller(url, StreamFormat(ENCODING, RATE), speed=1.0)
    track = caller_track(rng)
    said_goodbye = len(track) == len(LINES)
    # After "goodbye" the caller stays on the line until the agent hangs up (its tail ends as
    # soon as the socket closes); otherwise it hangs up itself after a short tail.
    tail_s = 10.0 if said_goodbye else 0.2
    began = time.monotonic()
    try:
        record = await asyncio.wait_for(
            caller.run_turns(track, gap_s=0.6, reply_timeout_s=10.0, tail_s=tail_s),
            CALL_LIMIT_S,
        )
    except Exception as exc:
        return Outcome(False, f"exception: {exc!r}"[:200], time.monotonic() - began, 0, "")
    seconds = time.monotonic() - began
    turns = {
        str(e.message.get("name", "")).split("/")[0] for e in record.sent_by_agent("checkpoint")
    }
    expected = 1 + len(track)  # the greeting, then a reply to each line
    if record.protocol_errors:
        return Outcome(False, f"protocol: {record.protocol_errors[0]}", seconds, len(turns), "")
    if record.close_code not in (1000, None):
        reason = f"closed {record.close_code} {record.close_reason}"[:200]
        return Outcome(False, reason, seconds, len(turns), record.closed_by)
    if len(turns) < expected:
        reason = f"{len(turns)} of {expected} agent turns"
        return Outcome(False, reason, seconds, len(turns), record.closed_by)
    if record.closed_by != ("agent" if said_goodbye else "caller"):
        reason = f"closed by {record.closed_by or 'nobody'} (goodbye said: {said_goodbye})"
        return Outcome(False, reason, seconds, len(turns), record.closed_by)
    return Outcome(True, "ok", seconds, len(turns), record.closed_by)


class Load:
    """``n`` caller slots, each starting a new call as soon as its last one ends."""

    def __init__(self, url: str, n: int, seed: int) -> None:
        self.url = url
        self.n = n
        self.seed = seed
        self.active = 0
        self.outcomes: list[Outcome] = []
        self.stopping = False

    @property
    def calls_done(self) -> int:
        return len(self.outcomes)

    @property
    def failed(self) -> int:
        return sum(not o.ok for o in self.outcomes)

    async def slot(self, index: int, stagger_s: float) -> None:
        rng = random.Random(f"{self.seed}/{index}")
        await asyncio.sleep(rng.uniform(0.0, stagger_s))
        while not self.stopping:
            self.active += 1
            try:
                self.outcomes.append(await one_call(self.url, rng))
            finally:
                self.active -= 1


class GenLoad:
    """``n`` slots of ``bench/loadgen.py`` callers in worker processes, each slot running calls
    of ``call_s`` back to back (starts spread over ``stagger_s``, a short gap between calls)
    until ``duration_s`` is over; the last calls end up to ``call_s`` later. A slot's next
    call starts only once its last has ended, so a slow server never has more than ``n``."""

    GAP_S = 0.3  # between one call's end and the slot's next start

    def __init__(
        self,
        url: str,
        n: int,
        seed: int,
        duration_s: float,
        call_s: float,
        stagger_s: float,
        procs: int,
    ) -> None:
        self.url = url
        self.n = n
        self.seed = seed
        self.duration_s = duration_s
        self.call_s = call_s
        self.stagger_s = stagger_s
        self.procs = procs
        self.realtime = True
        self.active = 0
        self.calls_done = 0
        self.failed = 0  # while running: calls that erred; at the end, every failure
        self.gen_pids: list[int] = []
        self.outcomes: list[Outcome] = []
        self.gen: dict[str, Any] = {}

    async def warm_up(self) -> dict[str, Any]:
        """One unmeasured call of 3 s, from this process."""
        from bench import capacity, loadgen

        track = capacity.tracks_for(1, self.seed, 3.0, capacity.caller_speech())
        (log,) = await loadgen.run_load(self.url, track, stagger_s=0.0)
        return {"error": log.error, "close_code": log.close_code, "play_audio": len(log.audio)}

    def _status(self, live: int, ended: int, errors: int) -> None:
        self.active, self.calls_done, self.failed = live, ended, errors

    def _spawned(self, pids: list[int]) -> None:
        self.gen_pids = pids

    async def run(self) -> None:
        from bench import capacity, loadgen

        speech = capacity.caller_speech()
        variants = capacity.tracks_for(capacity.VARIANTS, self.seed, self.call_s, speech)
        began = time.monotonic() + 2.0  # the workers start meanwhile
        period = self.call_s + self.GAP_S
        tracks: list[loadgen.Track] = []
        starts: list[float] = []
        after: list[int | None] = []
        for slot in range(self.n):
            first = began + self.stagger_s * slot / self.n
            for j in range(max(1, int(np.ceil((self.duration_s - (first - began)) / period)))):
                # Each call of the slot after the one before it has ended (a slow server never
                # has more than n calls), and not after the duration is over.
                after.append(len(tracks) - 1 if j else None)
                tracks.append(variants[(slot + j) % len(variants)])
                starts.append(first + j * period)
        run = await loadgen.run_load_procs(
            self.url,
            tracks,
            procs=self.procs,
            starts=starts,
            on_status=self._status,
            on_spawn=self._spawned,
            realtime=self.realtime,
            after=after,
            until=began + self.duration_s,
        )
        for log in run.logs:
            if log.skipped:
                continue
            result = loadgen.analyse(log, capacity.SILENCE_S)
            seconds = (log.closed_at or log.start_at) - log.start_at
            reason = "ok"
            if log.error:
                reason = f"error: {log.error}"[:200]
            elif log.close_code not in (1000, None):
                reason = f"closed {log.close_code}"
            elif result["missing_replies"]:
                reason = "reply missing"
            replies = len(result["latency"])
            self.outcomes.append(Outcome(reason == "ok", reason, seconds, replies, "caller"))
        self.failed = sum(not o.ok for o in self.outcomes)
        self.gen = capacity.gen_summary(run, capacity.GEN_LATE_LIMIT_MS)


# --- sampling -----------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (kB), threads and open fds of a process."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for row in f:
            key, _, value = row.partition(":")
            if key in ("VmRSS", "Threads"):
                found[key] = int(value.split()[0])
    found["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return found


class Sampler:
    """The service's RSS, fds and threads from /proc, with its latest self-report."""

    def __init__(self, service: ServiceProcess, load: Load | GenLoad, began: float) -> None:
        self.service = service
        self.load = load
        self.began = began
        self.rows: list[dict[str, Any]] = []
        self._gen_ticks: dict[int, int] = {}
        self._ticks = (cpu_ticks(service.pid), cpu_ticks("self"), *machine_ticks(), began)

    @property
    def latest(self) -> dict[str, Any]:
        """The service's latest self-report."""
        return self.service.last.get("stats", {})

    def sample(self, phase: str) -> dict[str, Any]:
        status = proc_status(self.service.pid)
        service_ticks = cpu_ticks(self.service.pid)
        for pid in getattr(self.load, "gen_pids", []):  # the generator's workers (may have ended)
            self._gen_ticks[pid] = max(cpu_ticks(pid), self._gen_ticks.get(pid, 0))
        own_ticks = cpu_ticks("self") + sum(self._gen_ticks.values())
        busy, total = machine_ticks()
        now = time.monotonic()
        s0, o0, b0, t0, w0 = self._ticks
        hz = os.sysconf("SC_CLK_TCK")
        wall = max(now - w0, 1e-6)
        ours = (service_ticks - s0) + (own_ticks - o0)
        row = {
            "t": round(now - self.began, 1),
            "phase": phase,
            "rss_mib": round(status["VmRSS"] / 1024, 2),
            "fds": status["fds"],
            "threads": status["Threads"],
            "tasks": self.latest.get("tasks"),
            "active_calls": self.latest.get("active_calls"),
            "total_calls": self.latest.get("total_calls"),
            "callers_active": self.load.active,
            "calls_done": self.load.calls_done,
            "failed": self.load.failed,
            "service_cpu_pct_of_core": round(100 * (service_ticks - s0) / hz / wall, 1),
            "callers_cpu_pct_of_core": round(100 * (own_ticks - o0) / hz / wall, 1),
            "others_pct_of_machine": round(100 * max(busy - b0 - ours, 0) / max(total - t0, 1), 1),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
        self._ticks = (service_ticks, own_ticks, busy, total, now)
        self.rows.append(row)
        return row


async def wait_for(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.2)
    return bool(predicate())


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from voicebridge.observe.logs import configure_logging

    configure_logging("console", "error")  # the callers' own logs: only errors
    out = Path(args.out)
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": machine_info(),
        "code_start": code_version(),
        "args": {k: v for k, v in vars(args).items() if k not in ("child", "lifetime")},
        "pipeline": PIPELINE if args.driver == "plivo" else "bench/vb_server.py (capacity flow)",
    }
    lifetime = args.duration + 300
    gen = args.driver == "loadgen"
    pin = gen and shutil.which("taskset") is not None and {0, 1} <= os.sched_getaffinity(0)
    flow = "capacity" if gen else "scripted"
    service = await start_service(
        out.with_name(out.stem + "-service.log"), lifetime, args.sample_s, flow, pin
    )
    results["service_pinned"] = service.pinned
    load: Load | GenLoad
    if gen:
        from bench.capacity import CALLS_PER_GEN

        procs = args.gen_procs
        procs = max(1, -(-args.calls // CALLS_PER_GEN)) if procs == "auto" else int(procs)
        load = GenLoad(
            service.ws_url,
            args.calls,
            args.seed,
            args.duration,
            args.call_s,
            args.stagger_s,
            procs,
        )
        load.realtime = args.gen_rt != "off"
    else:
        load = Load(service.ws_url, args.calls, args.seed)
    sampler = Sampler(service, load, time.monotonic())
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}", timeout=10)
    original = os.sched_getaffinity(0)
    try:
        if pin:
            os.sched_setaffinity(0, {1})  # the callers (and the workers they start) on core 1
        await wait_for(lambda: sampler.latest, 30)
        # Warm-up: one call, then the idle baseline.
        if isinstance(load, GenLoad):
            results["warmup_call"] = await load.warm_up()
        else:
            warm = await one_call(service.ws_url, random.Random(f"{args.seed}/warm"))
            results["warmup_call"] = warm.__dict__
        await asyncio.sleep(args.sample_s + 0.5)
        idle_start = sampler.sample("idle_start")
        progress(f"idle: {idle_start}")
        began = time.monotonic()
        next_report = began

        def report(row: dict[str, Any]) -> None:
            nonlocal next_report
            if time.monotonic() >= next_report:
                progress(
                    f"t={row['t']:.0f}s calls done {row['calls_done']} failed {row['failed']} "
                    f"active {row['active_calls']} rss {row['rss_mib']} MiB fds {row['fds']} "
                    f"tasks {row['tasks']} svc cpu {row['service_cpu_pct_of_core']}% "
                    f"load {row['loadavg_1m']}"
                )
                next_report += 30

        if isinstance(load, GenLoad):
            running = asyncio.get_running_loop().create_task(load.run())
            limit = began + args.duration + args.call_s + CALL_LIMIT_S
            while not running.done() and time.monotonic() < limit:
                await asyncio.wait({running}, timeout=args.sample_s)
                if not running.done():
                    report(sampler.sample("load"))
            if not running.done():
                running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            running.result()
            results["generator"] = load.gen
        else:
            slots = [
                asyncio.get_running_loop().create_task(load.slot(i, args.stagger_s))
                for i in range(args.calls)
            ]
            while time.monotonic() - began < args.duration:
                await asyncio.sleep(args.sample_s)
                report(sampler.sample("load"))
            load.stopping = True
            progress("duration over: letting the calls in progress finish")
            _, pending = await asyncio.wait(slots, timeout=CALL_LIMIT_S + 30)
            for task in pending:
                task.cancel()
            results["slots_cancelled"] = len(pending)
        drained = await wait_for(lambda: sampler.latest.get("active_calls") == 0, 30)
        await asyncio.sleep(args.sample_s + 0.5)  # a fresh self-report after the last call
        idle_end = sampler.sample("idle_end")  # before /health: its connection is an fd
        health = (await http.get("/health")).json()
        results.update(
            drained=drained,
            health_end=health,
            service_report_end=sampler.latest,
            samples=sampler.rows,
            load_seconds=round(time.monotonic() - began, 1),
        )
    finally:
        os.sched_setaffinity(0, original)
        await http.aclose()
        await service.stop()
    outcomes = load.outcomes
    failures = collections.Counter(o.reason for o in outcomes if not o.ok)
    results["calls"] = {
        "total": len(outcomes),
        "failed": sum(failures.values()),
        "failures": dict(failures.most_common(20)),
        "closed_by": dict(collections.Counter(o.closed_by for o in outcomes)),
        "call_seconds_p50": round(float(np.percentile([o.seconds for o in outcomes], 50)), 2)
        if outcomes
        else None,
    }
    results["summary"] = summarise(sampler.rows, idle_start, idle_end, args.calls)
    results["code_end"] = code_version()
    return results


def flatness(steady: list[dict[str, Any]], idle_rss_mib: float, calls: int) -> dict[str, Any]:
    """How flat the service's memory stayed over the steady part: the RSS slope in MB/min, per
    1000 calls served (a leak per call shows here however long the calls are), and the memory
    per live call (steady mean over idle)."""
    if len(steady) < 3:
        return {}
    t = np.array([r["t"] for r in steady], dtype=float)
    rss_mb = np.array([r["rss_mib"] for r in steady], dtype=float) * 1.048576
    mb_per_min = float(np.polyfit(t, rss_mb, 1)[0]) * 60
    done = [r["calls_done"] for r in steady]
    minutes = (t[-1] - t[0]) / 60
    calls_per_min = (done[-1] - done[0]) / minutes if minutes > 0 else 0.0
    return {
        "steady_minutes": round(minutes, 2),
        "steady_mb_per_min": round(mb_per_min, 4),
        "growth_mb_over_steady": round(mb_per_min * minutes, 2),
        "calls_served_per_min": round(calls_per_min, 1),
        "kb_per_1000_calls": round(mb_per_min / calls_per_min * 1e6, 2) if calls_per_min else None,
        "mb_per_live_call": round((float(rss_mb.mean()) - idle_rss_mib * 1.048576) / calls, 3),
    }


def summarise(
    rows: list[dict[str, Any]],
    idle_start: dict[str, Any],
    idle_end: dict[str, Any],
    calls: int | None = None,
) -> dict[str, Any]:
    load = [r for r in rows if r["phase"] == "load"]
    steady = load[len(load) // 10 :] or load  # the first tenth is ramp-up
    if calls:  # ... and the tail, where calls end and are not replaced
        full = [r for r in steady if (r["callers_active"] or 0) >= 0.9 * calls]
        steady = full if len(full) >= 3 else steady
    t = np.array([r["t"] for r in steady], dtype=float)
    rss = np.array([r["rss_mib"] for r in steady], dtype=float)
    slope = float(np.polyfit(t, rss, 1)[0]) * 60 if len(steady) >= 3 else None
    half = steady[len(steady) // 2 :]
    late_slope = (
        float(np.polyfit([r["t"] for r in half], [r["rss_mib"] for r in half], 1)[0]) * 60
        if len(half) >= 3
        else None
    )
    third = max(1, len(steady) // 3)

    def mean(part: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in part if r[key] is not None]
        return round(float(np.mean(values)), 2) if values else None

    per_call = [r["tasks"] / r["active_calls"] for r in steady if r["tasks"] and r["active_calls"]]
    return {
        "flatness": flatness(steady, idle_start["rss_mib"], calls or 1),
        "rss_mib": {
            "idle_start": idle_start["rss_mib"],
            "steady_first_third_mean": mean(steady[:third], "rss_mib"),
            "steady_middle_third_mean": mean(steady[third : 2 * third], "rss_mib"),
            "steady_last_third_mean": mean(steady[2 * third :], "rss_mib"),
            "max": max((r["rss_mib"] for r in load), default=None),
            "idle_end": idle_end["rss_mib"],
            "steady_slope_mib_per_min": round(slope, 3) if slope is not None else None,
            "second_half_slope_mib_per_min": None if late_slope is None else round(late_slope, 3),
        },
        "fds": {
            "idle_start": idle_start["fds"],
            "load_max": max((r["fds"] for r in load), default=None),
            "idle_end": idle_end["fds"],
        },
        "tasks": {
            "idle_start": idle_start["tasks"],
            "load_max": max((r["tasks"] or 0 for r in load), default=None),
            "per_active_call_mean": round(float(np.mean(per_call)), 2) if per_call else None,
            "idle_end": idle_end["tasks"],
        },
        "threads": {"idle_start": idle_start["threads"], "idle_end": idle_end["threads"]},
        "active_calls_steady_mean": mean(steady, "active_calls"),
        "service_cpu_pct_of_core_mean": mean(load, "service_cpu_pct_of_core"),
        "callers_cpu_pct_of_core_mean": mean(load, "callers_cpu_pct_of_core"),
        "others_pct_of_machine_mean": mean(load, "others_pct_of_machine"),
        "loadavg_1m": {
            "min": min((r["loadavg_1m"] for r in load), default=None),
            "max": max((r["loadavg_1m"] for r in load), default=None),
        },
    }


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    calls = results["calls"]
    a = results["args"]
    rss, fds, tasks = s["rss_mib"], s["fds"], s["tasks"]
    lines = [
        f"### Soak: {a['calls']} concurrent calls for {a['duration']:.0f} s",
        "",
        f"Commit `{results['code_start']['commit'][:10]}`; load average (1 min) during the "
        f"load {s['loadavg_1m']['min']}-{s['loadavg_1m']['max']}; other processes took "
        f"{s['others_pct_of_machine_mean']} % of the machine on average.",
        "",
        "| calls | failed | mean active | call length p50 s | service CPU % of a core | "
        "callers CPU % of a core |",
        "|---|---|---|---|---|---|",
        f"| {calls['total']} | {calls['failed']} | {s['active_calls_steady_mean']} | "
        f"{calls['call_seconds_p50']} | {s['service_cpu_pct_of_core_mean']} | "
        f"{s['callers_cpu_pct_of_core_mean']} |",
        "",
        "| service | idle at start | steady, first third | middle third | last third | max | "
        "idle at end | slope, steady part | slope, second half |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| RSS MiB | {rss['idle_start']} | {rss['steady_first_third_mean']} | "
        f"{rss['steady_middle_third_mean']} | {rss['steady_last_third_mean']} | {rss['max']} | "
        f"{rss['idle_end']} | {rss['steady_slope_mib_per_min']} MiB/min | "
        f"{rss['second_half_slope_mib_per_min']} MiB/min |",
        "",
        "| service | idle at start | max under load | idle at end |",
        "|---|---|---|---|",
        f"| open fds | {fds['idle_start']} | {fds['load_max']} | {fds['idle_end']} |",
        f"| asyncio tasks | {tasks['idle_start']} | {tasks['load_max']} | {tasks['idle_end']} |",
        f"| threads | {s['threads']['idle_start']} | - | {s['threads']['idle_end']} |",
        "",
        f"Flatness over the steady part: {json.dumps(s.get('flatness'))}.",
        "",
        f"Tasks per active call under load: {tasks['per_active_call_mean']}. "
        f"`/health` after the load: active_calls {results['health_end']['active_calls']}, "
        f"total_calls {results['health_end']['total_calls']}. "
        f"Calls ended by: {results['calls']['closed_by']}.",
    ]
    if calls["failures"]:
        lines += ["", "Failures: " + json.dumps(calls["failures"])]
    ended = (results.get("service_report_end") or {}).get("ended")
    if ended:
        lines += ["", f"Service end reasons: {json.dumps(ended)}"]
    lines += ["", "RSS over time (MiB, every sample of the load):", ""]
    load = [r for r in results["samples"] if r["phase"] == "load"]
    step = max(1, len(load) // 20)
    lines.append(
        "| t s | active calls | RSS MiB | fds | tasks | service CPU % | load avg |\n"
        "|---|---|---|---|---|---|---|"
    )
    for r in load[::step]:
        lines.append(
            f"| {r['t']:.0f} | {r['active_calls']} | {r['rss_mib']} | {r['fds']} | "
            f"{r['tasks']} | {r['service_cpu_pct_of_core']} | {r['loadavg_1m']} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=100, help="concurrent calls (default 100)")
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    p.add_argument("--sample-s", type=float, default=5.0, help="sampling period (default 5 s)")
    p.add_argument("--stagger-s", type=float, default=10.0, help="spread of the first starts")
    p.add_argument(
        "--driver",
        choices=["plivo", "loadgen"],
        default="plivo",
        help="callers: voicebridge's PlivoCaller in this process (plivo), or bench/loadgen.py's "
        "light callers in worker processes on core 1, against the capacity call flow on core 0 "
        "(loadgen: for hundreds of calls)",
    )
    p.add_argument("--call-s", type=float, default=20.0, help="loadgen: seconds per call")
    p.add_argument("--gen-procs", default="auto", help="loadgen: worker processes (or auto)")
    p.add_argument(
        "--gen-rt",
        choices=["auto", "off"],
        default="auto",
        help="loadgen: the workers run SCHED_FIFO when allowed (auto) or at normal priority",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="JSON results file")
    p.add_argument("--child", choices=["serve"], help=argparse.SUPPRESS)
    p.add_argument("--flow", default="scripted", help=argparse.SUPPRESS)
    p.add_argument("--lifetime", type=float, default=900.0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child == "serve":
        asyncio.run(child_serve(args.lifetime, args.sample_s, args.flow))
        return 0
    results = asyncio.run(run(args))
    print(write(args, results))
    return 0 if results["calls"]["failed"] == 0 else 1


def write(args: argparse.Namespace, results: dict[str, Any]) -> str:
    """``results`` to ``--out`` (JSON) and beside it as markdown, which is returned."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    text = markdown(results)
    out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    progress(f"wrote {out}")
    return text


if __name__ == "__main__":
    sys.exit(main())
