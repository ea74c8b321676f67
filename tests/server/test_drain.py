"""Graceful drain: no new calls, live calls finish, stragglers get a goodbye, exit status 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from voicebridge.clock import StreamClock
from voicebridge.server.drain import DrainResult
from voicebridge.server.run import RunningService, running_service
from voicebridge.sim.answer import answer_call
from voicebridge.sim.caller import PlivoCaller
from voicebridge.sim.signals import utterances

from .conftest import FMT, ROOT, Sessions, echo_spec, fast_caller, scripted_spec, settings, until


class PausedCaller:
    """A lockstep caller that stops before frame ``at`` until the test lets it go on."""

    def __init__(self, service: RunningService, sessions: Sessions, at: int = 20) -> None:
        self.at = at
        self.paused = asyncio.Event()
        self.go = asyncio.Event()
        self.sessions = sessions
        self.caller = fast_caller(service.ws_url, sessions)
        self.caller._probe = self._probe

    async def _probe(self, caller: PlivoCaller) -> None:
        await self.sessions.lockstep(caller)
        if caller.frames_sent == self.at:
            self.paused.set()
            await self.go.wait()


async def refused_reason(service: RunningService) -> tuple[int | None, str]:
    return await refused_reason_at(service.ws_url)


async def test_draining_refuses_new_calls_and_lets_live_ones_finish() -> None:
    sessions = Sessions()
    async with running_service(
        settings(), echo_spec(), clock_factory=StreamClock, on_session=sessions
    ) as service:
        live = PausedCaller(service, sessions)
        audio = utterances([("silence", 0.3), ("speech", 0.8), ("silence", 1.0)], 8000)
        call = asyncio.create_task(live.caller.run(audio, tail_s=1.0))
        await live.paused.wait()

        drain = service.app.state.drainer.start()  # what SIGTERM does in `voicebridge serve`
        async with httpx.AsyncClient(base_url=service.http_base) as client:
            health = await client.get("/health")
            answer = await client.post("/answer", data={"CallUUID": "new"})
        code, reason = await refused_reason(service)
        assert not drain.done()  # the live call holds the drain open

        live.go.set()
        record = await call
        result = await drain
        metrics = service.app.state.metrics

    assert health.status_code == 503
    assert health.json()["status"] == "draining" and health.json()["active_calls"] == 1
    assert answer.status_code == 503  # Plivo then uses the number's fallback URL
    assert code == 1013 and reason.startswith("draining")
    # The live call went on to its natural end: its echo played, the caller hung up.
    assert record.closed_by == "caller" and record.protocol_errors == []
    assert [a.message["name"] for a in record.sent_by_caller("playedStream")] == ["turn-1/piece-1"]
    assert result == DrainResult(finished=1, wound_up=0)
    assert metrics.value("voicebridge_calls_total", {"outcome": "refused"}) == 1
    assert metrics.value("voicebridge_calls_total", {"outcome": "caller_hangup"}) == 1


async def test_at_the_deadline_the_agent_says_goodbye_then_closes_with_1001() -> None:
    sessions = Sessions()
    drain = {"deadline_s": 0, "goodbye": "We are closing now. Goodbye."}
    async with running_service(
        settings(drain=drain),
        scripted_spec([]),
        clock_factory=StreamClock,
        on_session=sessions,
        record_events=True,
    ) as service:
        live = PausedCaller(service, sessions)
        call = asyncio.create_task(live.caller.run(utterances([("silence", 60.0)], 8000)))
        await live.paused.wait()
        draining = service.app.state.drainer.start()
        live.go.set()  # the caller streams on (and plays the goodbye) while the drain ends it
        record = await call
        result = await draining
        metrics = service.app.state.metrics

    assert result == DrainResult(finished=0, wound_up=1)
    assert record.closed_by == "agent"
    assert record.close_code == 1001
    assert record.close_reason == "service restarting: please call again"
    # The goodbye was sent, played to its end (every piece acknowledged), then the call closed.
    checkpoints = [c.message["name"] for c in record.sent_by_agent("checkpoint")]
    acks = [a.message["name"] for a in record.sent_by_caller("playedStream")]
    assert checkpoints == acks == ["turn-1/piece-1", "turn-1/piece-2"]
    assert record.duration_s < 60.0
    events = sessions.all[0].timeline.dicts()
    spoken = [e["text"] for e in events if e["kind"] == "agent_text"]
    assert spoken == ["We are closing now.", "Goodbye."]
    assert [e["reason"] for e in events if e["kind"] == "call_ended"] == ["draining"]
    assert metrics.value("voicebridge_calls_total", {"outcome": "draining"}) == 1


async def test_a_pipeline_that_cannot_speak_is_closed_at_the_deadline() -> None:
    sessions = Sessions()
    async with running_service(
        settings(drain={"deadline_s": 0}),
        echo_spec(),
        clock_factory=StreamClock,
        on_session=sessions,
    ) as service:
        live = PausedCaller(service, sessions)
        call = asyncio.create_task(live.caller.run(utterances([("silence", 60.0)], 8000)))
        await live.paused.wait()
        result = await service.app.state.drain()
        live.go.set()
        record = await call
    assert result == DrainResult(finished=0, wound_up=1)
    assert (record.close_code, record.closed_by) == (1001, "agent")
    assert record.sent_by_agent("playAudio") == []


async def test_a_goodbye_never_acknowledged_is_given_up_after_its_timeout() -> None:
    sessions = Sessions()
    drain = {"deadline_s": 0, "goodbye_timeout_s": 0.05}
    async with running_service(
        settings(drain=drain), scripted_spec([]), clock_factory=StreamClock, on_session=sessions
    ) as service:
        live = PausedCaller(service, sessions)  # it stays paused: nothing is ever played
        call = asyncio.create_task(live.caller.run(utterances([("silence", 60.0)], 8000)))
        await live.paused.wait()
        result = await service.app.state.drain()
        session = sessions.all[0]
        live.go.set()
        record = await call
    assert result == DrainResult(finished=0, wound_up=1)
    assert session.end_reason == "draining"
    assert record.close_code == 1001
    assert record.sent_by_caller("playedStream") == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_sigterm_drains_the_real_process_and_it_exits_0(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebridge.cli", "serve", "pipelines/echo.yaml",
        "--host", "127.0.0.1", "--port", str(port), "--log-format", "json",
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            await until(lambda: proc.returncode is not None or _listening(port), 30)
            assert (await client.get("/health")).json()["status"] == "ok"
            seen: dict[str, Any] = {}
            # Stream tokens are on by default: both calls get their stream URL from /answer.
            answered = await answer_call(f"{base}/answer", environ={})
            second = await answer_call(f"{base}/answer", environ={})
            assert "?token=" in answered.url

            async def at_frame_10(caller: PlivoCaller) -> None:
                if caller.frames_sent != 10:
                    return
                proc.send_signal(signal.SIGTERM)
                while (health := await client.get("/health")).status_code != 503:
                    await asyncio.sleep(0.01)  # the signal is handled asynchronously
                seen["health"] = health.json()
                seen["refused"] = await refused_reason_at(second.url)

            audio = utterances([("silence", 0.3), ("speech", 0.8), ("silence", 1.2)], 8000)
            caller = PlivoCaller(
                answered.url, FMT, speed=4.0, probe=at_frame_10, call_id=answered.call_uuid
            )
            record = await caller.run(audio, tail_s=0.6)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert seen["health"]["status"] == "draining" and seen["health"]["active_calls"] == 1
    assert seen["refused"][0] == 1013
    assert record.closed_by == "caller" and record.protocol_errors == []
    assert [a.message["name"] for a in record.sent_by_caller("playedStream")] == ["turn-1/piece-1"]
    logs = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    events = [entry["event"] for entry in logs]
    assert "shutdown_requested" in events
    (ready,) = [entry for entry in logs if entry["event"] == "service_ready"]
    assert (ready["stream_tokens"], ready["token_signing"]) == ("on", "generated")
    assert "stream_secret_generated" in events
    (done,) = [entry for entry in logs if entry["event"] == "drain_complete"]
    assert (done["finished"], done["ended_by_drain"]) == (1, 0)
    # Structured JSON logs: every line of the call carries its call and stream ids.
    call_lines = [e for e in logs if e.get("call_id") == record.call_id]
    assert {"call_started", "turn_played", "call_ended"} <= {e["event"] for e in call_lines}
    assert all(e["stream_id"] == record.stream_id for e in call_lines)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def refused_reason_at(url: str) -> tuple[int | None, str]:
    async with connect(url) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code, ws.close_reason or ""


async def test_a_second_sigterm_stops_at_once(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "service.yaml"
    config.write_text("drain:\n  deadline_s: 600\n")  # the drain alone would wait ten minutes
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebridge.cli", "serve", "pipelines/echo.yaml",
        "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
        "--log-format", "json",
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await until(lambda: proc.returncode is not None or _listening(port), 30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            answered = await answer_call(f"http://127.0.0.1:{port}/answer", environ={})

            async def at_frame_10(caller: PlivoCaller) -> None:
                if caller.frames_sent != 10:
                    return
                proc.send_signal(signal.SIGTERM)
                while (await client.get("/health")).status_code != 503:
                    await asyncio.sleep(0.01)  # the signal is handled asynchronously
                proc.send_signal(signal.SIGTERM)

            audio = utterances([("silence", 120.0)], 8000)
            caller = PlivoCaller(
                answered.url, FMT, speed=4.0, probe=at_frame_10, call_id=answered.call_uuid
            )
            record = await caller.run(audio, tail_s=0.5)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert record.closed_by == "agent" and record.duration_s < 120.0
    assert (record.close_code, record.close_reason) == (1001, "service stopping")
    logs = [json.loads(line) for line in err.decode().splitlines() if line[:1] == "{"]
    assert "shutdown_forced" in [e["event"] for e in logs]
    (ended,) = [e for e in logs if e["event"] == "call_ended"]
    assert ended["reason"] == "service_stopping"
    assert (ended["call_id"], ended["stream_id"]) == (record.call_id, record.stream_id)


async def test_a_caller_hanging_up_during_the_goodbye_ends_the_drain_at_once() -> None:
    sessions = Sessions()
    drain = {"deadline_s": 0, "goodbye_timeout_s": 600}  # the hang-up, not a timeout, ends it
    async with running_service(
        settings(drain=drain), scripted_spec([]), on_session=sessions
    ) as service:
        async with connect(service.ws_url) as ws:
            await ws.send(
                json.dumps(
                    {
                        "event": "start",
                        "start": {
                            "callId": "leaving",
                            "streamId": "leaving-stream",
                            "accountId": "MA1",
                            "mediaFormat": {"encoding": FMT.encoding, "sampleRate": 8000},
                        },
                    }
                )
            )
            await until(lambda: bool(sessions.all) and sessions.all[0].pipeline is not None)
            draining = service.app.state.drainer.start()
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert first["event"] == "playAudio"  # the goodbye is being spoken...
        # ...and the caller hangs up before it has played.
        result = await asyncio.wait_for(draining, 30)
        metrics = service.app.state.metrics
    assert result == DrainResult(finished=0, wound_up=1)
    assert sessions.all[0].end_reason == "socket_closed"
    assert metrics.value("voicebridge_calls_total", {"outcome": "caller_hangup"}) == 1
