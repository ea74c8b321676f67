# ruff: noqa: E501  (table rows read better on one line)
"""The media path at the limit (issue 16): the figure behind every goal of the issue, voicebridge
and Pipecat 1.14 side by side, in one run on one machine, with one command.

    PYTHONPATH=. python bench/media_path.py            # the goals run (about 12-15 min)
    PYTHONPATH=. python bench/media_path.py --quick    # smoke run (about 3 min)
    PYTHONPATH=. python bench/media_path.py --soak     # ... then the 10-minute soak at 300 calls
    PYTHONPATH=. python bench/media_path.py --help

``bench/capacity.py``'s call flow, callers and measurements (zero-latency fake providers, real
caller speech, each server pinned to core 0), with the load generator in worker processes pinned
to core 1 (``bench/loadgen.py``), each of which reports how late it was itself: a level where the
generator was late is *invalid*, not a failure of the server. The parts, one after another:

1. **ramp**: one voicebridge server; 100, 200, ... 600 calls (μ-law 8 kHz), up to the first
   level that is not clean. *Clean*: no failed call, every stream accepted before its first
   frame was due, every caller frame processed, framework-added reply latency p99 < 20 ms, no reply missing, no outgoing audio late (p99 of
   the playout gaps inside a reply < 20 ms), and a generator on time.
2. **pieces**: two fresh servers whose replies are one sentence of 3 s, in 1 piece or in 20
   (150 ms each), at 100 calls each: the CPU a reply's piece count costs.
3. **codec**: one fresh server, 100 calls in μ-law 8 kHz, then 100 in L16 16 kHz.
4. **Pipecat 1.14**: a ramp from 5 calls up to its first level that is not clean, then 100
   calls on a fresh server (its CPU per call there).
5. **before** (``--before REF``, on by default): the same 100 calls on a server built from an
   older commit (a detached git worktree in the temp folder, its own ``bench/vb_server.py``),
   alternating with today's, fresh servers each round: before and after in one run.

Every level records the share of the machine other processes used while it ran. Writes
``bench/out/media_path.json`` (every figure) and ``.md`` (the goals, met or missed, and every
level), and prints the markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import capacity  # noqa: E402
from bench.bargein import code_version  # noqa: E402
from bench.capacity import progress  # noqa: E402

OUT = REPO / "bench" / "out"
GUARD_MS = capacity.GUARD_S * 1000
LIMIT_MS = 20.0  # reply latency p99 and outgoing audio lateness p99, per level
MB_PER_MIB = 1.048576
PIECES = (1, 20)
SMALL = 0.10  # a cost (pieces, codec) we call small: at most 10 % more CPU per call

# The goals, as thresholds.
GOAL_CPU_PER_CALL_PCT = 0.15
GOAL_VS_PIPECAT = 20.0
GOAL_CALLS = 400
GOAL_LATENCY_P99_MS = 5.0
GOAL_BARGE_OVER_GUARD_MS = 20.0
GOAL_MB_PER_CALL = 0.2
GOAL_SOAK_MB_PER_MIN = 0.1  # "flat": under 1 MB of growth over the 10 minutes


# --- one level's verdict ------------------------------------------------------------------------


def verdict(row: dict[str, Any]) -> tuple[str, list[str]]:
    """``pass``, ``fail`` or ``invalid``, with the reasons. A late generator (see
    ``capacity.gen_summary``) makes a level *invalid* unless it failed by more than the
    generator's own lateness (a count, or a figure past its limit by more than that): a server
    that is seconds behind has failed whatever the generator did."""
    gen = row["gen"]
    margin = 0.0 if gen["valid"] else max(gen["send_late_p99_ms"], gen["loop_lag_p99_ms"])
    reasons = []
    if row["error_count"]:
        reasons.append(f"{row['error_count']} failed calls")
    if gen["frames_due_before_open"] and gen["handshake_p99_ms"] > 300 + margin:
        reasons.append(
            f"{gen['frames_due_before_open']} caller frames due before their WebSocket was "
            f"open (handshake p99 {gen['handshake_p99_ms']} ms)"
        )
    if not row["delivered"] or row["frames_sent"] < row["frames"]:
        reasons.append("caller frames not all processed")
    if row["missing_replies"]:
        reasons.append(f"{row['missing_replies']} replies missing")
    latency = row["fw_latency_ms"]["p99"]
    if latency is None or latency >= LIMIT_MS + margin:
        reasons.append(f"added latency p99 {latency} ms")
    gap = row["out_gap_ms"]["p99"] or 0.0
    if gap >= LIMIT_MS + margin:
        reasons.append(f"outgoing audio late: p99 {gap} ms")
    if not gen["valid"]:
        late = (
            f"generator late: send p99 {gen['send_late_p99_ms']} ms, loop lag p99 "
            f"{gen['loop_lag_p99_ms']} ms (limit {gen['limit_ms']} ms)"
        )
        return ("fail" if reasons else "invalid"), [*reasons, late]
    return ("fail" if reasons else "pass"), reasons


def mark(row: dict[str, Any]) -> dict[str, Any]:
    status, reasons = verdict(row)
    row["status"], row["reasons"] = status, reasons
    if row.get("cpu_us_per_frame"):
        # CPU per call from CPU time per processed caller frame (50 frames a second): the same
        # figure whether or not the server kept up (a saturated server's % of a core does not).
        row["cpu_pct_per_call_from_frames"] = round(row["cpu_us_per_frame"] * 50 / 1e4, 3)
    bargein = row["bargein_ms"]["p99"]
    row["bargein_over_guard_p99_ms"] = None if bargein is None else round(bargein - GUARD_MS, 2)
    return row


def stop_unless_clean(args: argparse.Namespace) -> Callable[[dict[str, Any]], bool]:
    def stop(row: dict[str, Any]) -> bool:
        return row["status"] != "pass" and not args.keep_going

    return stop


def not_clean(row: dict[str, Any]) -> bool:
    """Marks the level; true when it was not clean (run it again, if retries are left)."""
    mark(row)
    progress(f"  -> {row['status']} {'; '.join(row['reasons'])}")
    return row["status"] != "pass"


def never_stop(row: dict[str, Any]) -> bool:
    mark(row)
    return False


# --- the parts ----------------------------------------------------------------------------------


def before_tree(ref: str) -> tuple[Path, str]:
    """A checkout of ``ref`` outside the repository (so no tool walks into it), made once per
    commit and kept; returns its path and full commit id."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    path = Path(tempfile.gettempdir()) / f"voicebridge-before-{sha[:12]}"
    if not (path / "bench" / "vb_server.py").is_file():
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], check=True)
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(path), sha],
            check=True,
            capture_output=True,
        )
    return path, sha


def before_command(tree: Path) -> list[str]:
    """The older commit's own capacity server: its ``bench/vb_server.py`` puts its checkout
    first on ``sys.path``, so it runs that commit's ``voicebridge``."""
    command = capacity.vb_command()
    command[1] = str(tree / "bench" / "vb_server.py")
    return command


async def run_parts(args: argparse.Namespace) -> dict[str, Any]:
    speech = capacity.caller_speech()
    pcm_path = capacity.speaker_pcm()
    parts: dict[str, Any] = {}
    began = time.monotonic()
    n = args.compare_n

    def log_name(part: str) -> str:
        return f"media_path-{part}"

    if "ramp" in args.parts:
        progress(f"ramp: voicebridge, levels {args.levels}")
        parts["ramp"] = await capacity.run_framework(
            "voicebridge",
            capacity.vb_command(),
            args.levels,
            args,
            speech,
            stop=stop_unless_clean(args),
            log_name=log_name("voicebridge"),
            retry=not_clean,
            retries=args.retries,
        )
    if "pieces" in args.parts:
        runs = []
        for r in range(args.rounds):
            for pieces in PIECES if r % 2 == 0 else PIECES[::-1]:
                progress(f"pieces: a 3 s reply in {pieces} piece(s), {n} calls")
                fw = await capacity.run_framework(
                    f"voicebridge-{pieces}-pieces",
                    capacity.vb_command(sentences=1, pieces=pieces, sentence_s=capacity.REPLY_S),
                    [n],
                    args,
                    speech,
                    stop=never_stop,
                    log_name=log_name(f"pieces-{pieces}"),
                )
                fw["pieces"] = pieces
                runs.append(fw)
        parts["pieces"] = runs
    if "codec" in args.parts:
        progress(f"codec: μ-law 8 kHz and L16 16 kHz, {n} calls each")
        order = [(n, "mulaw"), (n, "l16")]
        levels = [lvl for r in range(args.rounds) for lvl in (order if r % 2 == 0 else order[::-1])]
        parts["codec"] = await capacity.run_framework(
            "voicebridge-codec",
            capacity.vb_command(),
            levels,
            args,
            speech,
            stop=never_stop,
            log_name=log_name("codec"),
        )
    if "pipecat" in args.parts:
        python = Path(args.pipecat_python) if args.pipecat_python else capacity.pipecat_python()
        command = capacity.pipecat_command(python, pcm_path)
        progress(f"pipecat: ramp {args.levels_pc}")
        ramp = await capacity.run_framework(
            "pipecat",
            command,
            args.levels_pc,
            args,
            speech,
            stop=stop_unless_clean(args),
            log_name=log_name("pipecat"),
            retry=not_clean,
            retries=args.retries,
        )
        at = None
        if args.pipecat_at:
            progress(f"pipecat: {args.pipecat_at} calls on a fresh server")
            at = await capacity.run_framework(
                "pipecat",
                command,
                [args.pipecat_at],
                args,
                speech,
                stop=never_stop,
                log_name=log_name("pipecat"),
            )
        parts["pipecat"] = {"ramp": ramp, "at": at}
    if "before" in args.parts and args.before:
        tree, sha = before_tree(args.before)
        runs = []
        for r in range(max(1, args.rounds)):
            for which in ("before", "after") if r % 2 == 0 else ("after", "before"):
                progress(
                    f"before/after: {which} ({sha[:10] if which == 'before' else 'HEAD'}), {n} calls"
                )
                fw = await capacity.run_framework(
                    f"voicebridge-{which}",
                    before_command(tree) if which == "before" else capacity.vb_command(),
                    [n],
                    args,
                    speech,
                    stop=never_stop,
                    log_name=log_name(which),
                )
                fw["which"] = which
                runs.append(fw)
        parts["before"] = {"ref": args.before, "commit": sha, "tree": str(tree), "runs": runs}
    if "redis" in args.parts:
        parts["redis"] = await redis_part(args, speech, n)
    parts["seconds"] = round(time.monotonic() - began, 1)
    return parts


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def redis_part(args: argparse.Namespace, speech: Any, n: int) -> dict[str, Any]:
    """``n`` calls with the resumable state in memory, then in a real ``redis-server`` (pinned
    beside the load generator, its own CPU counted apart), alternating, fresh servers each."""
    from voicebridge.testing.redis_server import RedisServer, redis_available

    if not redis_available():
        progress("redis: redis-server is not installed; part skipped")
        return {"skipped": "redis-server not installed", "runs": []}
    redis = RedisServer()
    redis.start()
    assert redis.proc is not None
    if {0, 1} <= os.sched_getaffinity(0):
        os.sched_setaffinity(redis.proc.pid, {1})
    runs = []
    try:
        for r in range(max(1, args.rounds)):
            for state in ("memory", "redis") if r % 2 == 0 else ("redis", "memory"):
                progress(f"redis: state in {state}, {n} calls")
                command = capacity.vb_command()
                if state == "redis":
                    command = ["env", f"VOICEBRIDGE_STATE={redis.url}", *command]
                cpu0, t0 = cpu_seconds(redis.proc.pid), time.monotonic()
                fw = await capacity.run_framework(
                    f"voicebridge-state-{state}",
                    command,
                    [n],
                    args,
                    speech,
                    stop=never_stop,
                    log_name=f"media_path-state-{state}",
                )
                fw["state"] = state
                fw["redis_cpu_s"] = round(cpu_seconds(redis.proc.pid) - cpu0, 3)
                fw["wall_s"] = round(time.monotonic() - t0, 1)
                runs.append(fw)
    finally:
        redis.stop()
    return {"runs": runs}


# --- the goals ----------------------------------------------------------------------------------


def level(fw: dict[str, Any] | None, n: int, codec: str = "mulaw") -> dict[str, Any] | None:
    """The last level of ``n`` calls in ``codec`` that a server ran."""
    rows = [r for r in (fw or {}).get("levels", []) if r["n"] == n and r.get("codec") == codec]
    return rows[-1] if rows else None


def mean_of(rows: list[dict[str, Any] | None], key: str) -> float | None:
    values = [r[key] for r in rows if r and r.get(key) is not None]
    return round(sum(values) / len(values), 4) if values else None


def cost(base: float | None, other: float | None) -> float | None:
    """``other`` over ``base``, minus one (0.5: 50 % more)."""
    return None if not base or other is None else round(other / base - 1, 3)


def last_attempts(fw: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each level's last attempt, in the order run."""
    last: dict[int, dict[str, Any]] = {}
    for row in (fw or {}).get("levels", []):
        last.pop(row["n"], None)
        last[row["n"]] = row
    return list(last.values())


def largest_clean(fw: dict[str, Any] | None) -> int:
    """The largest level of the ramp such that it and every level below it were clean (each
    judged by its last attempt)."""
    best = 0
    for row in last_attempts(fw):
        if row.get("status") != "pass":
            break
        best = row["n"]
    return best


def rss_mb_per_call(fw: dict[str, Any] | None) -> float | None:
    """The slope of the server's RSS high-water (while all calls were live) over the ramp's
    levels (last attempts), in MB per call; None with fewer than two levels."""
    pts = [(r["n"], r["rss_mib_max"]) for r in last_attempts(fw) if r.get("rss_mib_max")]
    if len({n for n, _ in pts}) < 2:
        return None
    x, y = np.array(pts, dtype=np.float64).T
    return round(float(np.polyfit(x, y, 1)[0]) * MB_PER_MIB, 3)


def soak_figures(path: Path) -> dict[str, Any] | None:
    """The flatness figures of a soak run at 300 calls (``bench/soak.py --driver loadgen``)."""
    if not path.exists():
        return None
    soak = json.loads(path.read_text())
    s = soak.get("summary", {})
    return {
        "path": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
        "calls": soak.get("args", {}).get("calls"),
        "duration_s": soak.get("args", {}).get("duration"),
        "driver": soak.get("args", {}).get("driver"),
        "commit": (soak.get("code_start") or {}).get("commit", "")[:10],
        "started": soak.get("started"),
        "failed": soak.get("calls", {}).get("failed"),
        "total": soak.get("calls", {}).get("total"),
        "rss_mib": s.get("rss_mib"),
        "flatness": s.get("flatness"),
        "others_pct_of_machine_mean": s.get("others_pct_of_machine_mean"),
    }


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    parts = result["parts"]
    ramp = parts.get("ramp")
    n = result["args"]["compare_n"]
    out: list[dict[str, Any]] = []

    def add(goal: str, figure: Any, met: bool | None, note: str = "") -> None:
        out.append({"goal": goal, "figure": figure, "met": met, "note": note})

    at100 = level(ramp, 100)
    cpu: float | None = at100.get("cpu_pct_per_call") if at100 else None
    add(
        f"CPU per call at 100 calls < {GOAL_CPU_PER_CALL_PCT} % of a core",
        f"{cpu} %" if cpu is not None else "-",
        None if cpu is None else cpu < GOAL_CPU_PER_CALL_PCT,
        f"server {at100.get('server_pct_of_core')} % of a core; others {at100.get('others_pct_of_machine')} % of the machine"
        if at100
        else "no level of 100 calls",
    )
    # Pipecat's CPU per call where it still keeps up (its largest clean level; else its first):
    # saturated, as at 100 calls, its CPU per frame grows, which would flatter voicebridge.
    pc = parts.get("pipecat") or {}
    pc_at = level(pc.get("at"), result["args"]["pipecat_at"] or -1)
    pc_clean = largest_clean(pc.get("ramp"))
    pc_rows = last_attempts(pc.get("ramp"))
    pc_row = level(pc.get("ramp"), pc_clean) if pc_clean else (pc_rows[0] if pc_rows else None)
    vb_frames = at100 and at100.get("cpu_pct_per_call_from_frames")
    pc_frames = pc_row and pc_row.get("cpu_pct_per_call_from_frames")
    ratio = round(pc_frames / vb_frames, 1) if vb_frames and pc_frames else None
    direct = (
        round(pc_row["cpu_pct_per_call"] / cpu, 1)
        if pc_row and pc_row.get("cpu_pct_per_call") and cpu
        else None
    )
    add(
        f"CPU per call at least {GOAL_VS_PIPECAT:.0f}x less than Pipecat's",
        f"{ratio}x" if ratio else "-",
        None if ratio is None else ratio >= GOAL_VS_PIPECAT,
        (
            f"CPU time per caller frame as % of a core per call: voicebridge {vb_frames} (100 calls), "
            f"Pipecat {pc_frames} ({pc_row['n']} calls, its server at {pc_row.get('server_pct_of_core')} % of a core); "
            f"from % of a core / calls: {str(direct) + 'x' if direct else '-'}"
            + (
                f"; Pipecat at {pc_at['n']} calls: {pc_at.get('cpu_pct_per_call_from_frames')} "
                f"by frames, {pc_at.get('cpu_pct_per_call')} by % of a core (server at "
                f"{pc_at.get('server_pct_of_core')} %)"
                if pc_at
                else ""
            )
        )
        if pc_row
        else "Pipecat not run",
    )
    clean = largest_clean(ramp)
    first_bad = next((r for r in last_attempts(ramp) if r.get("status") != "pass"), None)
    retried = [r["n"] for r in (ramp or {}).get("levels", []) if r.get("attempt", 1) > 1]
    add(
        f"at least {GOAL_CALLS} calls on one core with added latency p99 < {LIMIT_MS:.0f} ms, no reply missing, no outgoing audio late",
        clean,
        None if ramp is None else clean >= GOAL_CALLS,
        (
            f"{first_bad['n']} calls: {first_bad['status']} ({'; '.join(first_bad['reasons'])})"
            if first_bad
            else f"every level run was clean (the largest: {max((r['n'] for r in (ramp or {}).get('levels', [])), default=0)})"
        )
        + (f"; run again after an attempt that was not clean: {retried}" if retried else ""),
    )
    lat: float | None = at100["fw_latency_ms"]["p99"] if at100 else None
    add(
        f"added latency p99 < {GOAL_LATENCY_P99_MS:.0f} ms at 100 calls",
        f"{lat} ms (p50 {at100['fw_latency_ms']['p50']})" if at100 else "-",
        None if lat is None else lat < GOAL_LATENCY_P99_MS,
    )
    at300 = level(ramp, 300)
    over: float | None = at300.get("bargein_over_guard_p99_ms") if at300 else None
    add(
        f"barge-in reaction p99 within guard + {GOAL_BARGE_OVER_GUARD_MS:.0f} ms at 300 calls",
        f"guard + {over} ms (onset → clearAudio p99 {at300['bargein_ms']['p99']} ms, n {at300['bargein_ms']['n']})"
        if at300 and over is not None
        else "-",
        None if over is None else over <= GOAL_BARGE_OVER_GUARD_MS,
        "" if at300 else "no level of 300 calls",
    )
    mb = rss_mb_per_call(ramp)
    add(
        f"memory per added call < {GOAL_MB_PER_CALL} MB",
        f"{mb} MB" if mb is not None else "-",
        None if mb is None else mb < GOAL_MB_PER_CALL,
        "slope of the server's RSS (high-water while all calls were live) over the ramp's levels",
    )
    soak = result.get("soak")
    flat = (soak or {}).get("flatness") or {}
    ok_soak = soak is not None and soak.get("calls") == 300 and (soak.get("duration_s") or 0) >= 600
    add(
        f"memory flat over a 10-minute soak at 300 calls (steady slope < {GOAL_SOAK_MB_PER_MIN} MB/min)",
        f"{flat.get('steady_mb_per_min')} MB/min, {flat.get('kb_per_1000_calls')} kB per 1000 calls served"
        if flat
        else "-",
        (flat.get("steady_mb_per_min", 1e9) < GOAL_SOAK_MB_PER_MIN and not soak.get("failed"))
        if soak and ok_soak and flat
        else None,
        f"{soak['path']}: {soak['calls']} calls, {soak['duration_s']} s, {soak['total']} calls served, {soak['failed']} failed, commit {soak['commit']}, started {soak['started']}"
        if soak
        else "no soak in this run (--soak, or bench/soak.py --driver loadgen --calls 300)",
    )
    pieces = parts.get("pieces") or []
    by_pieces = {
        p: mean_of([level(fw, n) for fw in pieces if fw["pieces"] == p], "cpu_pct_per_call")
        for p in PIECES
    }
    piece_cost = cost(by_pieces[PIECES[0]], by_pieces[PIECES[-1]])
    add(
        f"cost of a reply's piece count measured and small (1 vs {PIECES[-1]} pieces, {n} calls)",
        f"{piece_cost * 100:+.0f} % CPU per call" if piece_cost is not None else "-",
        None if piece_cost is None else piece_cost <= SMALL,
        f"CPU % of a core per call: {by_pieces}; 'small' = at most {SMALL * 100:.0f} % more (our reading)",
    )
    codec = parts.get("codec")
    codecs = {
        c: mean_of(
            [r for r in (codec or {}).get("levels", []) if r.get("codec") == c], "cpu_pct_per_call"
        )
        for c in ("mulaw", "l16")
    }
    codec_cost = cost(codecs["mulaw"], codecs["l16"])
    add(
        f"cost of the codec measured and small (μ-law 8 kHz vs L16 16 kHz, {n} calls)",
        f"{codec_cost * 100:+.0f} % CPU per call" if codec_cost is not None else "-",
        None if codec_cost is None else codec_cost <= SMALL,
        f"CPU % of a core per call: {codecs}; 'small' = at most {SMALL * 100:.0f} % more (our reading)",
    )
    return out


# --- tables -------------------------------------------------------------------------------------


def level_table(rows: list[dict[str, Any]], label: str | None = None) -> list[str]:
    lines = [
        f"| {label or 'N'} | codec | attempt | status | server % core | CPU %/call | µs CPU/frame | added latency p50/p99 ms | replies missing | out gap p99 ms (> 20 ms) | in late p99 ms | barge-in p99 minus guard ms (n) | RSS max MiB | loop lag p99 ms | others % machine | generator: procs, % core, send/lag p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gen = r["gen"]
        lines.append(
            f"| {r.get('label', r['n'])} | {r['codec']} | {r.get('attempt', 1)} | {r.get('status', '-')} | {r.get('server_pct_of_core')} | "
            f"{r.get('cpu_pct_per_call')} | {r.get('cpu_us_per_frame')} | "
            f"{r['fw_latency_ms']['p50']}/{r['fw_latency_ms']['p99']} | {r['missing_replies']} | "
            f"{r['out_gap_ms']['p99']} ({r['out_gap_ms'].get('late')}) | {r['in_late_ms']['p99']} | "
            f"{r.get('bargein_over_guard_p99_ms')} ({r['bargein_ms']['n']}) | {r.get('rss_mib_max')} | "
            f"{r['lag_ms']['p99']} | {r.get('others_pct_of_machine')} | "
            f"{gen['procs']}, {gen['cpu_pct_of_core']}, {gen['send_late_p99_ms']}/{gen['loop_lag_p99_ms']}"
            f"{'' if gen['valid'] else ' LATE'} |"
        )
    return lines


def before_after(result: dict[str, Any]) -> dict[str, float | None]:
    """Mean CPU per call and added latency p99 of the before/after runs."""
    runs = (result["parts"].get("before") or {}).get("runs", [])
    out: dict[str, float | None] = {}
    for which in ("before", "after"):
        rows = [r for fw in runs if fw["which"] == which for r in fw["levels"]]
        out[f"{which}_cpu"] = mean_of(rows, "cpu_pct_per_call")
        p99 = [r["fw_latency_ms"]["p99"] for r in rows if r["fw_latency_ms"]["p99"] is not None]
        out[f"{which}_p99"] = round(float(np.mean(p99)), 2) if p99 else None
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    """``bench/results.png``: CPU per call (before, after, Pipecat) and added latency p99
    against calls, from this one run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = result["parts"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    ba = before_after(result)
    pc = parts.get("pipecat") or {}
    # Pipecat's CPU per call where it still ran clean: at 100 calls it saturates the core, and
    # 100 % of a core over 100 calls would read as a cost it does not have.
    pc_n = largest_clean(pc.get("ramp"))
    pc_row = level(pc.get("ramp"), pc_n)
    n = result["args"]["compare_n"]
    bars = [
        (f"voicebridge\nbefore ({n} calls)", ba.get("before_cpu")),
        (f"voicebridge\nafter ({n} calls)", ba.get("after_cpu")),
        (
            f"Pipecat 1.14\n({pc_n} calls)",
            pc_row.get("cpu_pct_per_call") if pc_row else None,
        ),
    ]
    bars = [(name, value) for name, value in bars if value is not None]
    if bars:
        left.bar(
            [b[0] for b in bars], [b[1] for b in bars], color=["#999", "#2a7", "#c63"][: len(bars)]
        )
        for i, (_, value) in enumerate(bars):
            left.annotate(f"{value:.2f} %", (i, value), ha="center", va="bottom")
        left.axhline(GOAL_CPU_PER_CALL_PCT, ls="--", color="k", lw=0.8)
        left.set_yscale("log")
        left.set_ylim(top=max(b[1] for b in bars) * 1.6)
    left.set_title("CPU per call (% of one core; goal dashed)")
    for name, fw, colour in (
        ("voicebridge", parts.get("ramp"), "#2a7"),
        ("Pipecat 1.14", pc.get("ramp"), "#c63"),
    ):
        rows = sorted(last_attempts(fw), key=lambda r: r["n"])
        xs = [r["n"] for r in rows if r["fw_latency_ms"]["p99"] is not None]
        ys = [r["fw_latency_ms"]["p99"] for r in rows if r["fw_latency_ms"]["p99"] is not None]
        if xs:
            right.plot(xs, ys, "o-", label=name, color=colour)
    right.axhline(LIMIT_MS, ls="--", color="k", lw=0.8)
    right.set_yscale("log")
    right.set_xlabel("concurrent calls on one core")
    right.set_title("framework-added reply latency p99, ms (limit dashed)")
    right.legend()
    fig.suptitle(f"bench/media_path.py, one run, {result['started']} UTC", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def redis_lines(runs: list[dict[str, Any]]) -> list[str]:
    """What Redis costs per call: the service's extra CPU, and redis-server's own."""
    by: dict[str, list[dict[str, Any]]] = {"memory": [], "redis": []}
    for fw in runs:
        by[fw["state"]].append(fw)
    mem = mean_of([r for fw in by["memory"] for r in fw["levels"]], "cpu_pct_per_call")
    red = mean_of([r for fw in by["redis"] for r in fw["levels"]], "cpu_pct_per_call")
    if mem is None or red is None or not by["redis"]:
        return []
    n = by["redis"][0]["levels"][0]["n"]
    redis_pct = [100 * fw["redis_cpu_s"] / fw["wall_s"] / n for fw in by["redis"]]
    return [
        f"Service CPU per call: {mem} % of a core with the state in memory, {red} % in Redis "
        f"({cost(mem, red):+.0%}); redis-server itself: "
        f"{float(np.mean(redis_pct)):.4f} % of a core per call (its CPU over each run's wall "
        "time, start-up and warm-up call included, over the calls)."
    ]


def markdown(result: dict[str, Any]) -> str:
    m, code = result["machine"], result["code"]
    met = {True: "**met**", False: "**missed**", None: "not measured"}
    lines = [
        "## The media path at the limit (issue 16): goals",
        "",
        f"Run {result['started']} (UTC), {result['parts'].get('seconds')} s; commit `{code['commit'][:10]}`"
        f"{' with uncommitted changes under voicebridge/' if code['dirty'] else ''}"
        f"{'; the sources CHANGED during the run' if result['code_end']['sources_sha256'] != code['sources_sha256'] else ''}; "
        f"{m['nproc']} cores ({m['cpu_model']}), Python {m['python']}; load average {m['loadavg_at_start']} at the start, "
        f"{m.get('loadavg_at_end')} at the end. Server pinned to core 0, load generator to core 1; "
        "'others % machine' in each row is the share of the machine's CPU other processes used during that level.",
        "",
        "| goal | figure | result | how |",
        "|---|---|---|---|",
    ]
    for g in result["goals"]:
        lines.append(f"| {g['goal']} | {g['figure']} | {met[g['met']]} | {g['note'] or ''} |")
    parts = result["parts"]
    ba = before_after(result)
    if ba.get("before_cpu") is not None and ba.get("after_cpu") is not None:
        lines += [
            "",
            f"Before ({parts['before']['commit'][:10]}) and after, {result['args']['compare_n']} calls, "
            f"same run: CPU per call {ba['before_cpu']} % -> {ba['after_cpu']} % of a core "
            f"({ba['before_cpu'] / ba['after_cpu']:.2f}x less); added latency p99 "
            f"{ba['before_p99']} -> {ba['after_p99']} ms.",
        ]
    if parts.get("ramp"):
        lines += ["", "### voicebridge: the ramp", "", *level_table(parts["ramp"]["levels"])]
    if parts.get("pieces"):
        rows = []
        for fw in parts["pieces"]:
            for r in fw["levels"]:
                rows.append(r | {"label": f"{r['n']}, {fw['pieces']} piece(s)"})
        lines += [
            "",
            "### voicebridge: a 3 s reply in 1 or 20 pieces",
            "",
            *level_table(rows, "N, pieces"),
        ]
    if parts.get("codec"):
        lines += [
            "",
            "### voicebridge: μ-law 8 kHz against L16 16 kHz",
            "",
            *level_table(parts["codec"]["levels"]),
        ]
    if parts.get("before"):
        b = parts["before"]
        rows = [r | {"label": f"{r['n']}, {fw['which']}"} for fw in b["runs"] for r in fw["levels"]]
        lines += [
            "",
            f"### voicebridge before ({b['commit'][:10]}) and after, fresh servers, alternating",
            "",
            *level_table(rows, "N, code"),
        ]
    if (parts.get("redis") or {}).get("runs"):
        runs = parts["redis"]["runs"]
        rows = [r | {"label": f"{r['n']}, {fw['state']}"} for fw in runs for r in fw["levels"]]
        lines += [
            "",
            "### voicebridge: resumable state in memory or in Redis, alternating",
            "",
            *level_table(rows, "N, state"),
            "",
            *redis_lines(runs),
        ]
    pc = parts.get("pipecat")
    if pc:
        rows = list(pc["ramp"]["levels"]) + (list(pc["at"]["levels"]) if pc.get("at") else [])
        lines += [
            "",
            f"### Pipecat 1.14 (largest clean level: {largest_clean(pc['ramp'])})",
            "",
            *level_table(rows),
        ]
    if result.get("soak"):
        s = result["soak"]
        lines += ["", "### Soak", "", "```", json.dumps(s, indent=1), "```"]
    lines += [
        "",
        "status: *pass* = clean (no failed call, every stream open before its first frame was due, "
        "every frame processed, added latency p99 < 20 ms, no reply missing, outgoing audio p99 gap "
        "< 20 ms); *invalid* = the load generator was late (p99 > "
        f"{result['args']['gen_late_limit_ms']} ms) and the level did not fail by more than that, so "
        "it says nothing of the server. Generator: processes, % of a core (each over its own run), "
        "p99 of its send lateness / loop lag in ms.",
    ]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": capacity.machine_info(),
        "code": code_version(),
        "args": {k: v for k, v in vars(args).items()},
    }
    result["parts"] = await run_parts(args)
    if args.soak:
        from bench import soak

        progress(f"soak: {args.soak_calls} calls for {args.soak_duration:.0f} s")
        soak_args = soak.parse_args(
            [
                "--driver",
                "loadgen",
                "--calls",
                str(args.soak_calls),
                "--duration",
                str(args.soak_duration),
                "--gen-procs",
                str(args.gen_procs),
                "--gen-rt",
                args.gen_rt,
                "--out",
                str(args.soak_json),
            ]
        )
        soak.write(soak_args, await soak.run(soak_args))
    result["soak"] = soak_figures(Path(args.soak_json))
    result["machine"]["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    result["code_end"] = code_version()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few calls, short calls (smoke run)")
    parser.add_argument(
        "--parts",
        default="ramp,pieces,codec,pipecat,before",
        help="which parts to run (comma separated): ramp, pieces, codec, pipecat, before, "
        "redis (not by default: needs redis-server)",
    )
    parser.add_argument(
        "--before",
        default="f0a2498",
        help="the commit 'before' runs (default: main before the media-path work re-landed)",
    )
    parser.add_argument(
        "--plot",
        help="the figure to write (default: bench/results.png for the default --out, else "
        "beside --out)",
    )
    parser.add_argument("--levels", default="100,200,300,400,500,600", help="voicebridge's ramp")
    parser.add_argument("--levels-pc", default="5,10,15,20,30,40", help="Pipecat's ramp")
    parser.add_argument(
        "--pipecat-at", type=int, default=100, help="Pipecat at this many calls too (0: not)"
    )
    parser.add_argument(
        "--compare-n", type=int, default=100, help="calls per level for the piece and codec costs"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of the piece and codec comparisons (alternating order)",
    )
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of caller audio per call"
    )
    parser.add_argument("--stagger", type=float, default=3.0, help="call starts spread over this")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of an unmeasured call per server"
    )
    parser.add_argument("--keep-going", action="store_true", help="run every level, clean or not")
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="a ramp level that is not clean is run again this many times before the ramp stops "
        "(every attempt is reported; the last one counts): on a shared machine one burst of "
        "other work should not end the ramp",
    )
    parser.add_argument("--nice", type=int, default=0, help="as bench/capacity.py --nice")
    parser.add_argument(
        "--pipecat-python", help="use this interpreter instead of bench/.venv-pipecat"
    )
    capacity.add_gen_args(parser, default_procs="auto")
    parser.add_argument(
        "--soak", action="store_true", help="also run the soak (10 min at 300 calls) at the end"
    )
    parser.add_argument("--soak-calls", type=int, default=300)
    parser.add_argument("--soak-duration", type=float, default=600.0)
    parser.add_argument(
        "--soak-json",
        default=str(OUT / "soak-300.json"),
        help="the soak's results (written by --soak; otherwise read if present)",
    )
    parser.add_argument("--out", default=str(OUT / "media_path.json"))
    parser.add_argument(
        "--render",
        metavar="JSON",
        help="run nothing: judge the goals again and print the report of this results file",
    )
    args = parser.parse_args(argv)
    if args.quick:
        defaults = {
            "levels": "20,40",
            "levels_pc": "2,4",
            "pipecat_at": 8,
            "compare_n": 20,
            "duration": 8.0,
            "stagger": 1.0,
            "warmup": 0.0,
            "soak_calls": 30,
            "soak_duration": 30.0,
            "soak_json": str(OUT / "soak-quick.json"),
        }
        for key, value in defaults.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    args.levels = [int(v) for v in str(args.levels).split(",") if v]
    args.levels_pc = [int(v) for v in str(args.levels_pc).split(",") if v]
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.render:
        result = json.loads(Path(args.render).read_text())
        result["goals"] = goals(result)
        print(markdown(result))
        if args.plot:
            plot(result, Path(args.plot))
        return result
    if args.nice:
        os.nice(args.nice)
    result = asyncio.run(main_async(args))
    result["goals"] = goals(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    text = markdown(result)
    out.with_suffix(".md").write_text(text + "\n")
    default_out = Path(args.out).resolve() == (OUT / "media_path.json").resolve()
    plot_path = args.plot or (
        REPO / "bench" / "results.png" if default_out else out.with_suffix(".png")
    )
    plot(result, Path(plot_path))
    print(text)
    return result


if __name__ == "__main__":
    main()
