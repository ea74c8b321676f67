"""Every limit in configs/service.yaml, enforced by the real service (or the real CLI)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicebridge.cli import main
from voicebridge.clock import StreamClock
from voicebridge.config import ConfigError, load_pipeline
from voicebridge.server.run import running_service
from voicebridge.sim.signals import utterances
from voicebridge.testing import start_message

from .conftest import ROOT, Sessions, echo_spec, fast_caller, settings, until


def start(call_id: str) -> str:
    return start_message(call_id, account_id="MA1")


def media_of_size(total_bytes: int) -> str:
    """A media event whose JSON text is exactly ``total_bytes`` long."""
    empty = json.dumps({"event": "media", "media": {"payload": ""}})
    raw = b"\0" * ((total_bytes - len(empty)) // 8 * 6)  # whole 16-bit samples
    text = empty.replace('""', json.dumps(base64.b64encode(raw).decode()))
    return text + " " * (total_bytes - len(text))  # JSON allows trailing spaces


async def closed(ws: ClientConnection) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code, ws.close_reason or ""


async def test_calls_past_max_calls_are_refused_with_1013_until_one_ends() -> None:
    async with running_service(settings(limits={"max_calls": 2}), echo_spec()) as service:
        calls = service.app.state.calls
        first = await connect(service.ws_url)
        second = await connect(service.ws_url)
        await first.send(start("one"))
        await second.send(start("two"))
        await until(lambda: len(calls) == 2)
        async with connect(service.ws_url) as third:
            code, reason = await closed(third)
        assert (code, reason) == (1013, "service at capacity (2 calls)")
        await first.close()
        await until(lambda: len(calls) == 1)
        async with connect(service.ws_url) as fourth:  # room again
            await fourth.send(start("four"))
            await until(lambda: len(calls) == 2)
            await fourth.close()
        await second.close()
        assert calls.refused == 1 and calls.total == 3


async def test_max_message_bytes_is_the_websocket_limit_1009_past_it() -> None:
    limit = 4096
    service = running_service(settings(limits={"max_message_bytes": limit}), echo_spec())
    async with service as svc, connect(svc.ws_url, max_size=None) as ws:
        await ws.send(start("size"))
        await ws.send(media_of_size(limit))  # at the limit: taken
        await until(lambda: any(s.core.stats.media for s in svc.app.state.calls.sessions()))
        await ws.send(media_of_size(limit + 1))
        code, _ = await closed(ws)
    assert len(media_of_size(limit)) == limit
    assert code == 1009


async def test_max_call_seconds_ends_the_call_on_its_own_timeline() -> None:
    sessions = Sessions()
    async with running_service(
        settings(limits={"max_call_seconds": 2.0}),
        echo_spec(),
        clock_factory=StreamClock,
        on_session=sessions,
    ) as service:
        audio = utterances([("silence", 6.0)], 8000)
        record = await fast_caller(service.ws_url, sessions).run(audio, tail_s=0.5)
        metrics = service.app.state.metrics
    assert record.closed_by == "agent"
    assert (record.close_code, record.close_reason) == (1000, "maximum call duration reached")
    # Ended at the first housekeeping tick (every 0.1 s) at or past 2 s of the call's audio.
    assert 2.0 <= sessions.all[0].core.stream_time <= 2.0 + 0.1 + 0.02
    assert sessions.all[0].end_reason == "max_call_duration"
    assert metrics.value("voicebridge_calls_total", {"outcome": "timeout"}) == 1


def test_max_yaml_bytes_refuses_a_larger_pipeline_before_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = tmp_path / "big.yaml"
    text = (ROOT / "pipelines" / "echo.yaml").read_text()
    pipeline.write_text(text + "#" * 2000 + "\n")
    config = tmp_path / "service.yaml"
    config.write_text("limits:\n  max_yaml_bytes: 2048\n")
    assert main(["serve", str(pipeline), "--config", str(config), "--port", "0"]) == 3
    err = capsys.readouterr().err
    assert "larger than the limit of 2048 bytes" in err and "big.yaml" in err
    load_pipeline(pipeline)  # the default limit (1 MiB) takes it
    with pytest.raises(ConfigError):
        load_pipeline(pipeline, max_bytes=2048)
