"""Profile voicebridge's server under the capacity benchmark's load (cProfile).

    PYTHONPATH=. python bench/profile_server.py [-n 100] [--duration 15] [--top 40]

Starts ``bench/vb_server.py --profile`` (pinned to core 0 when it can), runs ``-n`` callers of
``bench/loadgen.py`` against it, stops it, and prints the functions where the server spent its
time (by own time, then cumulative). The profile is kept in ``bench/out/server.prof``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import capacity, loadgen  # noqa: E402


async def run(args: argparse.Namespace) -> Path:
    prof = capacity.OUT / "server.prof"
    command = [sys.executable, str(REPO / "bench" / "vb_server.py"), "--profile", str(prof)]
    pin = shutil.which("taskset") is not None and {0, 1} <= os.sched_getaffinity(0)
    server = await capacity.Server.start("profile", command, capacity.OUT / "profile.log", pin)
    original = os.sched_getaffinity(0)
    try:
        if pin:
            os.sched_setaffinity(0, {1})
        speech = capacity.caller_speech()
        tracks = capacity.tracks_for(args.n, 6, args.duration, speech)
        ticks = capacity.cpu_ticks(server.proc.pid)
        began = time.monotonic()
        await loadgen.run_load(server.url, tracks, stagger_s=2.0)
        wall = time.monotonic() - began
        used = (capacity.cpu_ticks(server.proc.pid) - ticks) / os.sysconf("SC_CLK_TCK")
        print(f"{args.n} calls: server CPU {used:.1f} s over {wall:.1f} s (profiler on)")
    finally:
        os.sched_setaffinity(0, original)
        await server.stop()
    return prof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    prof = asyncio.run(run(args))
    stats = pstats.Stats(str(prof))
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
