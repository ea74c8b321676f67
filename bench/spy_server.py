"""Sample voicebridge's capacity server with py-spy under the capacity benchmark's load.

    PYTHONPATH=. python bench/spy_server.py [-n 100] [--duration 30] [--window 15] [--top 30]

Like ``profile_server.py``, but with py-spy (a sampling profiler outside the process, so the
server runs at full speed, unlike under cProfile): starts ``bench/vb_server.py`` (pinned to core
0 when it can), runs ``-n`` callers of ``bench/loadgen.py`` (on core 1), samples the server for
``--window`` seconds in the middle of the load (``py-spy record --nonblocking``, idle time left
out), and prints where the CPU went: by leaf function, and by kind of code. Also prints the
server's CPU per call over the whole load. The server gets our ``PYTHONPATH``, so a package
put on it (``uvloop``, say) is measured without installing it. Needs ``py-spy`` (``pip install
py-spy``). The raw stacks are kept in ``bench/out/spy.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import capacity, loadgen  # noqa: E402
from bench.common import ServiceProcess, child_env  # noqa: E402

# Where a sample's leaf frame lives -> what kind of work it is (first match wins).
KINDS = [
    ("JSON and base64", r"orjson|/json/|base64|plivo/messages\.py|plivo/events\.py"),
    ("codec and VAD", r"webrtcvad|numpy|/audio/|stages/vad\.py|stages/decode\.py|stages/encode"),
    ("websockets/uvicorn/ASGI", r"uvicorn|websockets|starlette|server/ws_edge\.py"),
    ("asyncio loop and queues", r"asyncio|selectors\.py|uvloop"),
    ("session and pipeline", r"voicebridge|bench/vb_stages"),
]
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def where(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame.strip())
    if match is None:
        return frame, ""
    return match["func"], match["file"]


def kind_of(path: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, path):
            return kind
    return "other"


def report(raw: Path, top: int) -> None:
    leaf: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        func, path = where(frames[-1])
        short = path.split("site-packages/")[-1].split("/wt-h4/")[-1].split("python3.11/")[-1]
        leaf[f"{func} ({short})"] += count
        kinds[kind_of(path)] += count
        for name in {where(f)[0] + " (" + where(f)[1].split("/")[-1] + ")" for f in frames}:
            inclusive[name] += count
    print(f"{total} samples with the server on CPU")
    print("\nby kind of code (leaf frame):")
    for kind, count in kinds.most_common():
        print(f"  {100 * count / total:5.1f} %  {kind}")
    print(f"\ntop {top} leaf functions (own time):")
    for name, count in leaf.most_common(top):
        print(f"  {100 * count / total:5.1f} %  {name}")
    print(f"\ntop {top} functions including callees:")
    for name, count in inclusive.most_common(top):
        print(f"  {100 * count / total:5.1f} %  {name}")


async def run(args: argparse.Namespace) -> Path:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    raw = capacity.OUT / "spy.txt"
    command = [sys.executable, str(REPO / "bench" / "vb_server.py")]
    pin = shutil.which("taskset") is not None and {0, 1} <= os.sched_getaffinity(0)
    # Our PYTHONPATH is handed down: a package put there (uvloop) is the server's to use.
    server = await ServiceProcess.start(
        command, capacity.OUT / "spy.log", pin=pin, env=child_env(), ready_timeout_s=120.0
    )
    original = os.sched_getaffinity(0)
    try:
        if pin:
            os.sched_setaffinity(0, {1})
        speech = capacity.caller_speech()
        tracks = capacity.tracks_for(args.n, 6, args.duration, speech)
        ticks = capacity.cpu_ticks(server.proc.pid)
        began = time.monotonic()
        load = asyncio.get_running_loop().create_task(
            loadgen.run_load(server.ws_url, tracks, stagger_s=2.0)
        )
        await asyncio.sleep(max(0.0, (args.duration - args.window) / 2 + 2.5))
        sampler = await asyncio.create_subprocess_exec(
            spy,
            "record",
            "--pid",
            str(server.proc.pid),
            "--duration",
            str(int(args.window)),
            "--rate",
            str(args.rate),
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(raw),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await sampler.wait()
        await load
        wall = time.monotonic() - began
        used = (capacity.cpu_ticks(server.proc.pid) - ticks) / os.sysconf("SC_CLK_TCK")
        share = 100 * used / args.duration / args.n
        print(
            f"{args.n} calls: server CPU {used:.1f} s over {wall:.1f} s "
            f"(about {share:.3f} % of a core per call; sampler on for {args.window:g} s)"
        )
    finally:
        os.sched_setaffinity(0, original)
        await server.stop()
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    raw = asyncio.run(run(args))
    report(raw, args.top)


if __name__ == "__main__":
    main()
