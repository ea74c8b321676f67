"""Fuzzing the real service over loopback WebSockets (issue 7).

The echo pipeline is served by ``running_service`` on 127.0.0.1. Generated messages (valid
events, mutated events, raw text and binary frames) are sent on one socket after another (a new
one whenever the service closes the last, as it does after a ``stop``, an unusable ``start`` or
too many bad messages) while a clean echo call runs on its own socket. The clean call must hear
exactly what it hears when alone, ``/health`` must stay ok, and when the sockets are gone every
call must be released (``CallRegistry`` empty) with no asyncio task left behind.

Message count: 3 examples of 120 messages (derandomized): 360 messages through the service.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicebridge.clock import StreamClock
from voicebridge.config import ServiceSettings, load_pipeline
from voicebridge.server.run import running_service

from ..faults.loopback import Sessions, assert_released, clean_call, summary
from .strategies import FUZZ, mutated_events, raw_frames, valid_events

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_pipeline(ROOT / "pipelines" / "echo.yaml")
START = json.dumps(
    {
        "event": "start",
        "start": {
            "callId": "fuzz-call",
            "streamId": "fuzz-stream",
            "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 8000},
        },
    }
)
messages = st.one_of(mutated_events(), raw_frames(), valid_events().map(json.dumps), st.just(START))


async def send_garbage(url: str, batch: list[str | bytes]) -> int:
    """Send every message, opening a new socket whenever the service closed the last one.
    Returns how many sockets it took."""
    sockets = 0
    pending = list(batch)
    while pending:
        sockets += 1
        ws: ClientConnection
        async with connect(url, compression=None, max_size=None) as ws:
            try:
                while pending:
                    await ws.send(pending[0])
                    pending.pop(0)
                    await asyncio.sleep(0)
            except ConnectionClosed:
                pending.pop(0)  # the service closed this socket on that message
    return sockets


async def fuzz_round(batch: list[str | bytes]) -> None:
    settings_ = ServiceSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": 0,
            "security": {"stream_token": "off"},
        }  # fuzzes /stream directly
    )
    watches = Sessions()
    async with running_service(
        settings_, SPEC, clock_factory=StreamClock, on_session=watches
    ) as service:
        baseline_tasks = len(asyncio.all_tasks())
        alone = summary(await clean_call(service, watches))
        assert alone[0] == () and len(alone[1]) == 1, alone  # one echo, acknowledged
        garbage = asyncio.create_task(send_garbage(service.ws_url, batch))
        beside = summary(await clean_call(service, watches))
        sockets = await garbage
        assert sockets >= 1
        assert beside == alone  # the garbage never reached the clean call
        async with httpx.AsyncClient(base_url=service.http_base) as client:
            health = (await client.get("/health")).json()
        assert health["status"] == "ok"
        await assert_released(service, watches, baseline_tasks)
        assert len(watches.all) == 2 + sockets  # alone, beside, and the garbage sockets
        assert sum(s.core.stats.bad_messages for s in watches.all) > 0


def test_service_survives_garbage_beside_a_clean_call() -> None:
    examples: list[int] = []

    @settings(FUZZ, max_examples=3)
    @given(st.lists(messages, min_size=120, max_size=120))
    def check(batch: list[str | bytes]) -> None:
        examples.append(len(batch))
        asyncio.run(fuzz_round(batch))

    check()
    assert sum(examples) >= 360
