"""`voicebridge serve` as a real process on a free loopback port, every output line kept, and
one simulated Plivo call over the real WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from voicebridge.sim.answer import answer_call
from voicebridge.testing.redis_server import free_port

from .conftest import ROOT

PIPELINE = """
name: observe-test
stages:
  - type: decode
  - type: vad
  - type: voicebridge.testing:ScriptedStt
  - type: voicebridge.testing:ScriptedDialogue
    params: {greeting: "Hello there."}
  - type: tests.e2e.library_stage:LibraryLogger
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""


class ServeProcess:
    """The service in a child process; stdout and stderr, merged, are read into ``lines`` as
    they come (so a test can see which worker logged what while the service runs)."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        pipeline = tmp_path / "observe.yaml"
        pipeline.write_text(PIPELINE)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        environ = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "VOICEBRIDGE_LOG_LEVEL": "info",
            "VOICEBRIDGE_RESUME_GRACE_S": "0",  # workers without a Redis: no resumes
            **(env or {}),
        }
        for name in ("VOICEBRIDGE_STREAM_SECRET", "PLIVO_AUTH_TOKEN", "PLIVO_AUTH_ID"):
            if name not in (env or {}):  # a made-up stream secret; unsigned /answer requests
                environ.pop(name, None)
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "voicebridge.cli", "serve", str(pipeline),
                "--host", "127.0.0.1", "--port", str(self.port), "--log-format", "json", *args,
            ],
            cwd=tmp_path,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def records(self) -> list[dict[str, Any]]:
        """Every line so far, parsed: a line that is not one JSON object fails the test."""
        out = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except ValueError:
                raise AssertionError(f"not a JSON line: {line!r}") from None
            assert isinstance(record, dict), line
            out.append(record)
        return out

    async def worker_pids(self, want: int, timeout_s: float = 30.0) -> set[int]:
        """Health checks on fresh connections until ``want`` processes answered."""
        pids: set[int] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=self.base, limits=limits, timeout=2) as client:
            while len(pids) < want:
                assert loop.time() < deadline, "\n".join(self.lines[-30:])
                assert self.proc.poll() is None, "\n".join(self.lines[-30:])
                try:
                    pids.add((await client.get("/health")).json()["pid"])
                except httpx.TransportError:
                    await asyncio.sleep(0.05)  # still starting
        return pids

    async def call(self, call_id: str) -> None:
        """One Plivo call: /answer, then the stream until the greeting's first audio arrives,
        then the caller hangs up."""
        async with self.live_call(call_id):
            pass

    @contextlib.asynccontextmanager
    async def live_call(self, call_id: str) -> AsyncIterator[ClientConnection]:
        """A call in progress (its greeting started playing) until the block ends."""
        answered = await answer_call(f"{self.base}/answer", call_uuid=call_id, environ={})
        start = {
            "event": "start",
            "start": {
                "callId": call_id,
                "streamId": f"{call_id}-stream",
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
        }
        async with connect(answered.url) as ws:
            await ws.send(json.dumps(start))
            while json.loads(await asyncio.wait_for(ws.recv(), 10))["event"] != "playAudio":
                pass
            yield ws

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM (a drain with no call left), then every line to the end."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._reader.join(timeout=5)
        return code
