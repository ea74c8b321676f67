# ruff: noqa: E501  (table rows read better on one line)
"""Calls per core, framework-added latency, barge-in reaction and memory: voicebridge and
Pipecat 1.14 side by side, in one run on one machine (issue 6).

    PYTHONPATH=. python bench/capacity.py            # full run (about 10 min; makes the Pipecat
                                                     #   venv first if it is missing)
    PYTHONPATH=. python bench/capacity.py --quick    # smoke run, 1-2 min
    PYTHONPATH=. python bench/capacity.py --help

For each framework, one server process (``bench/vb_server.py``; ``bench/pipecat_server.py`` in
``bench/.venv-pipecat``) pinned to core 0 with ``taskset``, and the load generator
(``bench/loadgen.py``) in this process pinned to core 1. Levels of N concurrent callers run one
after another against the same server; each caller streams real speech (Piper's voice, made once
and cached) in real time, is answered by zero-latency fake providers, and talks over each
second answer. Writes ``bench/out/capacity.json`` and ``.md`` and ``bench/results.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import loadgen  # noqa: E402
from bench.common import ServiceProcess, child_env  # noqa: E402

OUT = REPO / "bench" / "out"
PIPECAT_VENV = REPO / "bench" / ".venv-pipecat"
PIPECAT_VERSION = "1.14.0"
SILENCE_S = 0.5  # both VADs: silence that ends an utterance
GUARD_S = 0.2  # voicebridge barge-in guard; Pipecat's VAD start_secs
SENTENCE_S = 1.0  # the fake speaker's audio per sentence; 3 sentences per reply
REPLY_S = 3 * SENTENCE_S
GOAL_LATE_S = 0.020
VARIANTS = 16  # distinct caller tracks per level (calls share them, offset in time)
CODECS = {"mulaw": (loadgen.MULAW, 8000), "l16": (loadgen.L16, 16000)}  # μ-law 8k, L16 16k
GEN_LATE_LIMIT_MS = 5.0  # a level whose generator was later than this (p99) is not valid
CALLS_PER_GEN = 300  # --gen-procs auto: one generator process per this many calls


def progress(text: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def pct(values: Any, q: float) -> float | None:
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    if not data.size:
        return None
    return float(np.percentile(data, q, method="inverted_cdf"))


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


# --- machine ------------------------------------------------------------------------------------


def machine_ticks() -> tuple[int, int]:
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def cpu_ticks(pid: int | str) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            text = f.read()
    except OSError:
        return 0
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[11]) + int(rest[12])


def rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as f:
        for row in f:
            if row.startswith("VmRSS:"):
                return int(row.split()[1]) / 1024
    return None


def machine_info() -> dict[str, Any]:
    model = platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for row in f:
            if row.lower().startswith("model name"):
                model = row.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
        "commit": commit,
    }


# --- inputs -------------------------------------------------------------------------------------


def caller_speech() -> tuple[np.ndarray, np.ndarray]:
    """Two caller lines in Piper's voice at 8 kHz (real speech: Silero does not take synthetic
    buzz for speech), made once and cached in bench/out/."""
    cache = OUT / "caller_speech.npz"
    if cache.exists():
        data = np.load(cache)
        return data["utterance"], data["interjection"]
    try:
        from voicebridge.stages.tts.hibari import synthesize
    except ImportError:
        # Without the offline voice: a voiced buzz that WebRTC VAD takes for speech (Silero does not).
        from voicebridge.sim.signals import speech_like

        progress("hibari is not installed (voicebridge[offline]): synthetic caller speech")
        return speech_like(2.4, 8000), speech_like(1.8, 8000)
    utterance = synthesize(
        "Hello, I would like to check on my order please.", 8000, pitch_semitones=-2
    )
    interjection = synthesize("Wait, sorry, one more thing about that.", 8000, pitch_semitones=-2)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(cache, utterance=utterance, interjection=interjection)
    return utterance, interjection


def speaker_pcm() -> Path:
    from voicebridge.sim.signals import speech_like

    path = OUT / "speaker_pcm.npy"
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(path, speech_like(SENTENCE_S, 8000, level=6000))  # as bench.vb_stages.PreparedSpeaker
    return path


def tracks_for(
    n: int,
    seed: int,
    duration_s: float,
    speech: tuple[np.ndarray, np.ndarray],
    codec: str = "mulaw",
) -> list[loadgen.Track]:
    """``n`` callers' tracks (``VARIANTS`` distinct ones, shared round-robin) in ``codec``
    (``CODECS``): the caller speech (8 kHz) is resampled when the stream is 16 kHz."""
    encoding, rate = CODECS[codec]
    if rate != 8000:
        from voicebridge.audio.resample import resample

        speech = (resample(speech[0], 8000, rate), resample(speech[1], 8000, rate))
    variants = [
        loadgen.build_track(
            np.random.default_rng([seed, v]),
            speech[0],
            speech[1],
            duration_s,
            reply_s=REPLY_S,
            silence_s=SILENCE_S,
            encoding=encoding,
            rate=rate,
        )
        for v in range(min(n, VARIANTS))
    ]
    return [variants[i % len(variants)] for i in range(n)]


# --- the Pipecat environment --------------------------------------------------------------------


def pipecat_python() -> Path:
    """bench/.venv-pipecat with Pipecat 1.14 (Silero VAD, WebSocket transport) and the same
    uvicorn as ours; created on first use."""
    python = PIPECAT_VENV / "bin" / "python"
    probe = [
        str(python),
        "-c",
        f"import pipecat, uvicorn, importlib.metadata as m; "
        f"assert m.version('pipecat-ai') == '{PIPECAT_VERSION}'",
    ]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    import uvicorn

    progress(f"creating {PIPECAT_VENV.relative_to(REPO)} with pipecat-ai {PIPECAT_VERSION} ...")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(PIPECAT_VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            f"pipecat-ai[silero,websocket]=={PIPECAT_VERSION}",
            f"uvicorn=={uvicorn.__version__}",
        ],
        check=True,
    )
    return python


# --- servers ------------------------------------------------------------------------------------


class Server:
    """A framework's server child (``vb_server.py``, ``pipecat_server.py``): what it reports of
    each call when the call ends, and its event-loop lag."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.probes: dict[str, dict[str, Any]] = {}
        self.lag: list[tuple[float, list[float]]] = []
        self.process: ServiceProcess  # set by start()

    @classmethod
    async def start(
        cls, name: str, command: list[str], log: Path, pin: bool, nice: int = 0
    ) -> Server:
        server = cls(name)
        server.process = await ServiceProcess.start(
            command,
            log,
            pin=pin,
            nice=nice,
            env=child_env(inherit_pythonpath=False),  # the Pipecat venv sees only this checkout
            ready_timeout_s=120.0,
            stop_grace_s=20.0,
            on_message=server._take,
        )
        return server

    @property
    def proc(self) -> asyncio.subprocess.Process:
        return self.process.proc

    @property
    def url(self) -> str:
        return self.process.ws_url

    def _take(self, message: dict[str, Any]) -> None:
        if message.get("type") == "call":
            self.probes[message["stream_id"]] = message
        elif message.get("type") == "lag":
            self.lag.append((message["t"], message["samples"]))

    async def wait_for_calls(self, ids: list[str], timeout_s: float = 15.0) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not all(i in self.probes for i in ids):
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        await self.process.stop()


class Sampler:
    """Every 0.2 s: the server's CPU ticks and RSS, ours, the machine's, and active calls."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.gen_pids: list[int] = []  # the load generator's worker processes, if any
        self.active = 0
        self.rows: list[tuple[float, int, int, int, int, int, float]] = []
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        busy, total = machine_ticks()
        self.rows.append(
            (
                time.monotonic(),
                cpu_ticks(self.pid),
                cpu_ticks("self") + sum(cpu_ticks(p) for p in self.gen_pids),
                busy,
                total,
                self.active,
                rss_mib(self.pid) or 0.0,
            )
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

    def window(self, n: int) -> dict[str, Any]:
        """CPU and RSS over the samples taken while all ``n`` calls were active."""
        rows = [r for r in self.rows if r[5] >= n]
        if len(rows) < 2:
            return {}
        hz = os.sysconf("SC_CLK_TCK")
        w0, s0, o0, b0, t0 = rows[0][:5]
        w1, s1, o1, b1, t1 = rows[-1][:5]
        wall = max(w1 - w0, 1e-6)
        ours = (s1 - s0) + (o1 - o0)
        return {
            "t0": w0,
            "t1": w1,
            "server_pct_of_core": round(100 * (s1 - s0) / hz / wall, 1),
            "loadgen_pct_of_core": round(100 * (o1 - o0) / hz / wall, 1),
            "others_pct_of_machine": round(100 * max(b1 - b0 - ours, 0) / max(t1 - t0, 1), 1),
            "rss_mib_max": round(max(r[6] for r in rows), 1),
        }


def decision_to_audio(log: loadgen.CallLog, ends: list[float]) -> list[float]:
    """Framework-added latency proper: from the caller sending the frame on which the server's
    VAD decided the utterance had ended, to the reply's first playAudio at the caller."""
    arrivals = np.array([a for a, _ in log.audio]) if log.audio else np.zeros(0)
    out = []
    for k in ends:
        k = round(k)
        if 0 <= k < len(log.sent) and not np.isnan(log.sent[k]):
            t = float(log.sent[k])
            idx = int(np.searchsorted(arrivals, t))
            if idx < len(arrivals) and arrivals[idx] < t + 2.0:
                out.append(float(arrivals[idx]) - t)
    return out


def decision_to_clear(
    log: loadgen.CallLog, starts: list[float], pairs: list[tuple[float, float]]
) -> list[float]:
    """For each barge-in: from the caller sending the frame on which the server's VAD decided
    speech had begun, to clearAudio at the caller (voicebridge then still waits out the rest
    of its guard; Pipecat's VAD start_secs is its guard)."""
    sent = [float(log.sent[round(k)]) for k in starts if 0 <= round(k) < len(log.sent)]
    out = []
    for onset, clear in pairs:
        inside = [t for t in sent if onset - 0.05 <= t <= clear]
        if inside:
            out.append(clear - inside[0])
    return out


# --- one level ----------------------------------------------------------------------------------


def gen_procs_for(n: int, args: argparse.Namespace) -> int:
    """How many load generator processes for ``n`` calls: ``--gen-procs`` (0: the callers run
    in this process; ``auto``: one per ``CALLS_PER_GEN`` calls)."""
    value = str(getattr(args, "gen_procs", "0"))
    if value == "auto":
        return max(1, -(-n // CALLS_PER_GEN))
    return max(0, int(value))


async def drive_load(
    url: str, tracks: list[loadgen.Track], args: argparse.Namespace, sampler: Sampler
) -> loadgen.LoadRun:
    """The callers, in this process or in worker processes (``gen_procs_for``), their live
    count fed to ``sampler`` (and their pids, for their CPU)."""
    stagger = args.stagger if len(tracks) > 1 else 0.0

    def on_active(count: int) -> None:
        sampler.active = count

    def on_spawn(pids: list[int]) -> None:
        sampler.gen_pids = pids

    procs = gen_procs_for(len(tracks), args)
    if procs:
        return await loadgen.run_load_procs(
            url,
            tracks,
            procs=procs,
            stagger_s=stagger,
            on_active=on_active,
            on_spawn=on_spawn,
            realtime=getattr(args, "gen_rt", "auto") != "off",
        )
    starts = loadgen.schedule_starts(len(tracks), stagger)
    return await loadgen.drive(url, tracks, starts, on_status=lambda live, *_: on_active(live))


def gen_summary(run: loadgen.LoadRun, limit_ms: float) -> dict[str, Any]:
    """The load generator on itself over a level: per process and worst of them. The level is
    ``valid`` only if no process sent its frames (p99) or woke (p99) later than ``limit_ms``:
    otherwise a late figure may be the generator's, not the server's."""
    late = max((g["send_late_ms"]["p99"] or 0.0 for g in run.gen), default=0.0)
    lag = max((g["loop_lag_ms"]["p99"] or 0.0 for g in run.gen), default=0.0)
    return {
        "procs": len(run.gen),
        "in_process": len(run.gen) == 1 and run.gen[0]["pid"] == os.getpid(),
        "sched": sorted({g.get("sched", "other") for g in run.gen}),
        "send_late_p99_ms": late,
        "loop_lag_p99_ms": lag,
        "cpu_pct_of_core": round(sum(g["cpu_pct_of_core"] for g in run.gen), 1),
        "cpu_us_per_frame": round(
            sum(g["cpu_us_per_frame"] * g["calls"] for g in run.gen)
            / max(sum(g["calls"] for g in run.gen), 1),
            1,
        ),
        "gc_pause_max_ms": max((g["gc_pause_ms"]["max"] or 0.0 for g in run.gen), default=0.0),
        # The server's: how long WebSocket handshakes took, and the frames due meanwhile.
        "handshake_p99_ms": max((g["handshake_ms"]["p99"] or 0.0 for g in run.gen), default=0.0),
        "frames_due_before_open": sum(g["frames_due_before_open"] for g in run.gen),
        "limit_ms": limit_ms,
        "valid": late <= limit_ms and lag <= limit_ms,
        "workers": run.gen,
    }


async def run_level(
    server: Server, n: int, args: argparse.Namespace, speech: Any, codec: str = "mulaw"
) -> dict[str, Any]:
    tracks = tracks_for(n, args.seed + n, args.duration, speech, codec)
    sampler = Sampler(server.proc.pid)
    rss_before = rss_mib(server.proc.pid)
    ticks_before = cpu_ticks(server.proc.pid)
    sampler.start()
    began = time.monotonic()
    run = await drive_load(server.url, tracks, args, sampler)
    logs = run.logs
    wall = time.monotonic() - began
    await sampler.stop()
    await server.wait_for_calls([log.stream_id for log in logs], timeout_s=60.0)
    ticks_used = cpu_ticks(server.proc.pid) - ticks_before
    await asyncio.sleep(1.0)
    rss_after = rss_mib(server.proc.pid)
    window = sampler.window(n)
    latency: list[float] = []
    fw_latency: list[float] = []
    decision_clear: list[float] = []
    bargein: list[float] = []
    gaps: list[float] = []
    gen_late: list[np.ndarray] = []
    in_late: list[np.ndarray] = []
    missing = barge_missed = not_playing = frames = sent = no_probe = 0
    errors = []
    for log in logs:
        if log.error or log.connected_at is None:
            errors.append(log.error or "never connected")
        result = loadgen.analyse(log, SILENCE_S)
        latency += result["latency"]
        bargein += result["bargein"]
        gaps += result["out_gaps"]
        gen_late.append(result["gen_late"])
        missing += result["missing_replies"]
        barge_missed += result["barge_missed"]
        not_playing += result["barge_not_playing"]
        frames += result["frames"]
        sent += result["frames_sent"]
        report = server.probes.pop(log.stream_id, None)
        if not report or not report.get("probe"):
            no_probe += 1
            continue
        fw_latency += decision_to_audio(log, report.get("ends") or [])
        decision_clear += decision_to_clear(
            log, report.get("starts") or [], result["bargein_pairs"]
        )
        pairs = np.asarray(report["probe"], dtype=np.float64).reshape(-1, 2)
        k = np.rint(pairs[:, 0]).astype(np.int64)
        ok = (k >= 0) & (k < len(log.sent))
        late = pairs[ok, 1] - log.sent[k[ok]]
        in_late.append(late[~np.isnan(late)])
    in_all = np.concatenate(in_late) if in_late else np.zeros(0)
    gen_all = np.concatenate(gen_late) if gen_late else np.zeros(0)
    lag = [
        s
        for t, samples in server.lag
        if window and window["t0"] <= t <= window["t1"]
        for s in samples
    ]
    p99_in, p99_out = pct(in_all, 99), pct(gaps, 99) if gaps else 0.0
    row = {
        "n": n,
        "codec": codec,
        "wall_s": round(wall, 1),
        "errors": errors[:5],
        "error_count": len(errors),
        "frames": frames,
        "frames_sent": sent,
        "frames_probed": int(in_all.size),
        "calls_without_probe": no_probe,
        "in_late_ms": {
            "p50": ms(pct(in_all, 50)),
            "p99": ms(p99_in),
            "max": ms(float(in_all.max()) if in_all.size else None),
        },
        "out_gap_ms": {
            "p50": ms(pct(gaps, 50)),
            "p99": ms(p99_out),
            "max": ms(max(gaps) if gaps else None),
            "n": len(gaps),
            "late": sum(g > GOAL_LATE_S for g in gaps),  # playout ran dry > 20 ms inside a reply
        },
        "latency_ms": {"p50": ms(pct(latency, 50)), "p99": ms(pct(latency, 99)), "n": len(latency)},
        "fw_latency_ms": {
            "p50": ms(pct(fw_latency, 50)),
            "p99": ms(pct(fw_latency, 99)),
            "n": len(fw_latency),
        },
        "missing_replies": missing,
        "bargein_ms": {"p50": ms(pct(bargein, 50)), "p99": ms(pct(bargein, 99)), "n": len(bargein)},
        "vad_start_to_clear_ms": {
            "p50": ms(pct(decision_clear, 50)),
            "p99": ms(pct(decision_clear, 99)),
            "n": len(decision_clear),
        },
        "barge_missed": barge_missed,
        "barge_not_playing": not_playing,
        "lag_ms": {
            "p50": ms(pct(lag, 50)),
            "p99": ms(pct(lag, 99)),
            "max": ms(max(lag) if lag else None),
        },
        "gen_late_ms": {
            "p99": ms(pct(gen_all, 99)),
            "max": ms(float(gen_all.max()) if gen_all.size else None),
        },
        "rss_before_mib": rss_before,
        "rss_after_mib": rss_after,
        **window,
    }
    delivered = in_all.size >= 0.95 * max(sent, 1)
    row["delivered"] = bool(delivered)
    row["gen"] = gen_summary(run, getattr(args, "gen_late_limit_ms", GEN_LATE_LIMIT_MS))
    row["worst_p99_ms"] = ms(max(p99_in or 0.0, p99_out or 0.0)) if in_all.size else None
    row["ok"] = bool(
        not errors
        and delivered
        and p99_in is not None
        and p99_in < GOAL_LATE_S
        and (p99_out or 0.0) < GOAL_LATE_S
    )
    row["loadgen_ok"] = row["gen"]["valid"]
    if window:
        row["cpu_pct_per_call"] = round(window["server_pct_of_core"] / n, 3)
    # CPU time per caller frame over the whole level: robust to other load on the machine
    # (the work is the same however long it waits for the CPU), unlike lateness.
    if in_all.size:
        used_s = ticks_used / os.sysconf("SC_CLK_TCK")
        row["cpu_us_per_frame"] = round(used_s / in_all.size * 1e6, 1)
        row["calls_per_core_cpu_estimate"] = round(1e6 / (50 * row["cpu_us_per_frame"]))
    return row


def ramp_stops(row: dict[str, Any], args: argparse.Namespace) -> bool:
    """capacity.py's rule: stop the ramp after a level that failed badly (p99 over 200 ms or
    failed calls), unless ``--keep-going``."""
    return (
        not args.keep_going
        and not row["ok"]
        and (row["worst_p99_ms"] is None or row["worst_p99_ms"] > 200 or bool(row["error_count"]))
    )


async def run_framework(
    name: str,
    command: list[str],
    levels: list[int] | list[tuple[int, str]],
    args: argparse.Namespace,
    speech: Any,
    *,
    stop: Callable[[dict[str, Any]], bool] | None = None,
    log_name: str | None = None,
    retry: Callable[[dict[str, Any]], bool] | None = None,
    retries: int = 0,
) -> dict[str, Any]:
    """One server process (``command``), then each level against it (``n``, or ``(n, codec)``)
    until ``stop(row)`` says so (default: :func:`ramp_stops`). A level for which ``retry(row)``
    is true is run again, up to ``retries`` times (every attempt is kept, numbered in
    ``attempt``), before ``stop`` judges its last attempt."""
    can_pin = shutil.which("taskset") is not None and {0, 1} <= os.sched_getaffinity(0)
    log = OUT / f"{log_name or 'capacity-' + name}.log"
    server = await Server.start(name, command, log, can_pin, args.nice)
    original = os.sched_getaffinity(0)
    rows: list[dict[str, Any]] = []
    try:
        if can_pin:
            os.sched_setaffinity(0, {1})
        await asyncio.sleep(1.0)
        rss_idle = rss_mib(server.proc.pid)
        progress(
            f"{name}: pid {server.proc.pid} on cores {server.process.affinity}, idle RSS {rss_idle:.0f} MiB"
        )
        # An unmeasured warm-up call (imports, first connection, model load).
        if args.warmup:
            warmup = tracks_for(1, args.seed, args.warmup, speech)
            await loadgen.run_load(server.url, warmup, stagger_s=0.0)
        queue = list(levels)
        attempts: dict[tuple[int, str], int] = {}
        while queue:
            level = queue.pop(0)
            n, codec = level if isinstance(level, tuple) else (level, "mulaw")
            row = await run_level(server, n, args, speech, codec)
            attempts[n, codec] = row["attempt"] = attempts.get((n, codec), 0) + 1
            rows.append(row)
            gen = row["gen"]
            progress(
                f"{name} N={n} {codec}: p99 in {row['in_late_ms']['p99']} ms, added latency "
                f"{row['fw_latency_ms']['p50']}/{row['fw_latency_ms']['p99']} ms, out gap "
                f"{row['out_gap_ms']['p99']} ms, latency p50/p99 {row['latency_ms']['p50']}/"
                f"{row['latency_ms']['p99']} ms, barge-in p99 {row['bargein_ms']['p99']} ms, "
                f"server {row.get('server_pct_of_core')} % core, {row.get('cpu_us_per_frame')} µs CPU/frame, RSS {row.get('rss_mib_max')} MiB, "
                f"others {row.get('others_pct_of_machine')} %, errors {row['error_count']}, "
                f"loadgen ({gen['procs']} proc, {gen['cpu_pct_of_core']} % core) p99 late "
                f"{gen['send_late_p99_ms']} ms, loop lag {gen['loop_lag_p99_ms']} ms"
                f"{'' if gen['valid'] else ' (GENERATOR LATE)'} -> {'ok' if row['ok'] else 'FAIL'}"
            )
            if retry is not None and retry(row) and row["attempt"] <= retries:
                progress(f"{name}: N={n} again (attempt {row['attempt'] + 1})")
                queue.insert(0, level)
                continue
            if (stop or (lambda r: ramp_stops(r, args)))(row):
                progress(f"{name}: stopping the ramp at N={n}")
                break
    finally:
        os.sched_setaffinity(0, original)
        await server.stop()
    return {
        "name": name,
        "pinned": server.process.pinned,
        "affinity": server.process.affinity,
        "rss_idle_mib": rss_idle,
        "levels": rows,
    }


# --- summary, tables, plot ----------------------------------------------------------------------


def summarise(fw: dict[str, Any]) -> dict[str, Any]:
    rows = fw["levels"]
    passing = [r["n"] for r in rows if r["ok"]]
    by_n = {r["n"]: r for r in rows}
    pts = [(r["n"], r["rss_mib_max"]) for r in rows if r.get("rss_mib_max")]
    slope = None
    if len(pts) >= 2:
        x, y = np.array(pts, dtype=np.float64).T
        slope = float(np.polyfit(x, y, 1)[0])
    afters = [r["rss_after_mib"] for r in rows if r.get("rss_after_mib")]
    return {
        "calls_per_core": max(passing) if passing else 0,
        "first_failing": next((r["n"] for r in rows if not r["ok"]), None),
        "cpu_pct_per_call_at_50": by_n.get(50, {}).get("cpu_pct_per_call"),
        "rss_mib_per_call": None if slope is None else round(slope, 3),
        "rss_idle_mib": fw.get("rss_idle_mib"),
        "rss_after_levels_mib": afters,
        "by_n": by_n,
    }


def ratio(a: Any, b: Any, higher_better: bool = True) -> str:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return "-"
    if not a or not b:
        return "-"
    return f"{a / b:.1f}x" if higher_better else f"{b / a:.1f}x"


def tables(result: dict[str, Any]) -> str:
    fws = {f["name"]: summarise(f) for f in result["frameworks"]}
    vb, pc = fws.get("voicebridge"), fws.get("pipecat")
    lines = ["| figure | voicebridge | Pipecat 1.14 | voicebridge advantage |", "|---|---|---|---|"]

    def cell(s: dict[str, Any] | None, n: int, path: tuple[str, str]) -> Any:
        if s is None or n not in s["by_n"]:
            return "-"
        value = s["by_n"][n].get(path[0], {})
        return value.get(path[1], "-") if isinstance(value, dict) else value

    def add(label: str, a: Any, b: Any, higher_better: bool = True) -> None:
        lines.append(
            f"| {label} | {a if a is not None else '-'} | {b if b is not None else '-'} | {ratio(a, b, higher_better)} |"
        )

    add(
        "calls per core (largest N tested with p99 in and out < 20 ms)",
        vb and vb["calls_per_core"],
        pc and pc["calls_per_core"],
    )
    for n in (50, 100):
        add(
            f"server CPU per caller frame at {n} calls, µs",
            cell(vb, n, ("cpu_us_per_frame", "")),
            cell(pc, n, ("cpu_us_per_frame", "")),
            False,
        )
    add(
        "CPU per call at 50 calls, % of a core",
        vb and vb["cpu_pct_per_call_at_50"],
        pc and pc["cpu_pct_per_call_at_50"],
        False,
    )
    for n in (1, 50, 100):
        for q in ("p50", "p99"):
            add(
                f"framework-added latency {q}, {n} calls, ms (VAD decision frame → first playAudio)",
                cell(vb, n, ("fw_latency_ms", q)),
                cell(pc, n, ("fw_latency_ms", q)),
                False,
            )
    for n in (1, 50, 100):
        for q in ("p50", "p99"):
            add(
                f"end of speech - silence window → first playAudio {q}, {n} calls, ms",
                cell(vb, n, ("latency_ms", q)),
                cell(pc, n, ("latency_ms", q)),
                False,
            )
    for n in (1, 50, 100):
        for q in ("p50", "p99"):
            add(
                f"barge-in onset → clearAudio {q}, {n} calls, ms",
                cell(vb, n, ("bargein_ms", q)),
                cell(pc, n, ("bargein_ms", q)),
                False,
            )
    for n in (1, 50, 100):
        add(
            f"barge-in: VAD start decision → clearAudio p99, {n} calls, ms",
            cell(vb, n, ("vad_start_to_clear_ms", "p99")),
            cell(pc, n, ("vad_start_to_clear_ms", "p99")),
            False,
        )
    add("RSS idle, MiB", vb and vb["rss_idle_mib"], pc and pc["rss_idle_mib"], False)
    add(
        "RSS per added call, MiB (slope over levels)",
        vb and vb["rss_mib_per_call"],
        pc and pc["rss_mib_per_call"],
        False,
    )
    for n in (50, 100):
        add(
            f"event-loop lag p99, {n} calls, ms",
            cell(vb, n, ("lag_ms", "p99")),
            cell(pc, n, ("lag_ms", "p99")),
            False,
        )
    out = ["## Side by side", "", *lines, ""]
    for name, s in fws.items():
        out += [
            f"## {name}: every level",
            "",
            "| N | p99 in late ms | p99 out gap ms | added latency p50/p99 ms | end of speech latency p50/p99 ms | barge-in p50/p99 ms (n) "
            "| server % core | CPU %/call | RSS max MiB | RSS after | loop lag p99 ms | others % machine "
            "| loadgen p99 late ms | errors | ok |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n, r in s["by_n"].items():
            out.append(
                f"| {n} | {r['in_late_ms']['p99']} | {r['out_gap_ms']['p99']} | "
                f"{r['fw_latency_ms']['p50']}/{r['fw_latency_ms']['p99']} | "
                f"{r['latency_ms']['p50']}/{r['latency_ms']['p99']} | "
                f"{r['bargein_ms']['p50']}/{r['bargein_ms']['p99']} ({r['bargein_ms']['n']}) | "
                f"{r.get('server_pct_of_core')} | {r.get('cpu_pct_per_call')} | {r.get('rss_mib_max')} | "
                f"{r.get('rss_after_mib') and round(r['rss_after_mib'], 1)} | {r['lag_ms']['p99']} | "
                f"{r.get('others_pct_of_machine')} | {r['gen_late_ms']['p99']} | {r['error_count']} | "
                f"{'yes' if r['ok'] else 'no'} |"
            )
        out.append("")
    return "\n".join(out)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    styles = {"voicebridge": ("tab:blue", "o"), "pipecat": ("tab:orange", "s")}
    for fw in result["frameworks"]:
        color, marker = styles.get(fw["name"], ("gray", "x"))
        rows = [r for r in fw["levels"] if r["in_late_ms"]["p99"] is not None]
        n = [r["n"] for r in rows]
        ax.plot(
            n,
            [max(r["in_late_ms"]["p99"], 0.1) for r in rows],
            marker=marker,
            color=color,
            label=f"{fw['name']}: incoming media processed",
        )
        ax.plot(
            n,
            [max(r["out_gap_ms"]["p99"] or 0.0, 0.1) for r in rows],
            marker=marker,
            color=color,
            linestyle="--",
            label=f"{fw['name']}: outgoing audio (playout gap)",
        )
    ax.axhline(20, color="red", linewidth=1, linestyle=":", label="20 ms (one frame)")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent calls (server pinned to one core)")
    ax.set_ylabel("p99 lateness, ms (0 drawn at 0.1)")
    ax.set_title("p99 lateness against concurrent calls (μ-law 8 kHz, zero-latency providers)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- main ---------------------------------------------------------------------------------------


def vb_command(sentences: int = 3, pieces: int = 1, sentence_s: float = SENTENCE_S) -> list[str]:
    """voicebridge's server: each reply ``sentences`` sentences of ``sentence_s`` seconds of
    audio, each in ``pieces`` pieces (the default: 3 sentences of 1 s, one piece each)."""
    return [
        sys.executable,
        str(REPO / "bench" / "vb_server.py"),
        "--sentence-s",
        str(sentence_s),
        "--sentences",
        str(sentences),
        "--pieces",
        str(pieces),
    ]


def pipecat_command(python: Path, pcm_path: Path) -> list[str]:
    """Pipecat's server, in its venv, with the same reply audio."""
    return [
        str(python),
        str(REPO / "bench" / "pipecat_server.py"),
        "--pcm",
        str(pcm_path),
        "--start-secs",
        str(GUARD_S),
        "--stop-secs",
        str(SILENCE_S),
    ]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    speech = caller_speech()
    pcm_path = speaker_pcm()
    result: dict[str, Any] = {"machine": machine_info(), "args": vars(args), "frameworks": []}
    plan = []
    if "voicebridge" in args.frameworks:
        plan.append(("voicebridge", vb_command(), args.levels_vb))
    if "pipecat" in args.frameworks:
        python = Path(args.pipecat_python) if args.pipecat_python else pipecat_python()
        plan.append(("pipecat", pipecat_command(python, pcm_path), args.levels_pc))
    for name, command, levels in plan:
        result["frameworks"].append(await run_framework(name, command, levels, args, speech))
    result["machine"]["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return result


def add_gen_args(parser: argparse.ArgumentParser, default_procs: str) -> None:
    """The load generator's options (shared with bench/media_path.py)."""
    parser.add_argument(
        "--gen-procs",
        default=default_procs,
        help="load generator processes, pinned to core 1: a number, 0 (the callers run in this "
        f"process) or auto (one per {CALLS_PER_GEN} calls)",
    )
    parser.add_argument(
        "--gen-rt",
        choices=["auto", "off"],
        default="auto",
        help="auto: the generator's worker processes run SCHED_FIFO when allowed (root), so "
        "other work on the load core does not make them late; off: normal priority",
    )
    parser.add_argument(
        "--gen-late-limit-ms",
        type=float,
        default=GEN_LATE_LIMIT_MS,
        help="a level where the generator sent its frames or woke later than this (p99) is "
        "marked invalid (the generator, not the server, may have been late)",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few calls, short calls")
    parser.add_argument("--frameworks", default="voicebridge,pipecat")
    parser.add_argument("--levels-vb", default="1,50,100,150,200,250,300")
    parser.add_argument("--levels-pc", default="1,5,10,15,20,30")
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of caller audio per call"
    )
    parser.add_argument("--stagger", type=float, default=3.0, help="call starts spread over this")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="run every level even after one fails (CPU figures on a busy machine)",
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of an unmeasured call")
    add_gen_args(parser, default_procs="0")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the server and the load generator at this nice value (e.g. -10, as root) so "
        "that other work on a shared machine disturbs the figures less",
    )
    parser.add_argument(
        "--pipecat-python", help="use this interpreter instead of bench/.venv-pipecat"
    )
    parser.add_argument(
        "--setup-only",
        action="store_true",
        help="build bench/.venv-pipecat (about a minute) and exit; .ci/run does this so that the "
        "Pipecat smoke test runs",
    )
    parser.add_argument("--out", default=str(OUT / "capacity.json"))
    parser.add_argument("--plot", default=str(REPO / "bench" / "results.png"))
    args = parser.parse_args(argv)
    if args.quick:
        if args.levels_vb == parser.get_default("levels_vb"):
            args.levels_vb = "1,5,20"
        if args.levels_pc == parser.get_default("levels_pc"):
            args.levels_pc = "1,5"
        if args.duration == parser.get_default("duration"):
            args.duration = 12.0
        if args.stagger == parser.get_default("stagger"):
            args.stagger = 1.0
    args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    args.levels_vb = [int(v) for v in str(args.levels_vb).split(",") if v]
    args.levels_pc = [int(v) for v in str(args.levels_pc).split(",") if v]
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.setup_only:
        return {"pipecat_python": str(pipecat_python())}
    if args.nice:
        os.nice(args.nice)
    result = asyncio.run(main_async(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    text = tables(result)
    out.with_suffix(".md").write_text(text)
    if args.plot:
        plot(result, Path(args.plot))
    print(text)
    return result


if __name__ == "__main__":
    main()
