"""The abuse suite's helpers: the real service on loopback with short edge deadlines, a normal
call to run beside each attack, and every log line the process writes, captured and measured."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from voicebridge.clock import StreamClock
from voicebridge.config import ServiceSettings, load_pipeline
from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import RunningService, running_service
from voicebridge.sim.caller import CallRecord, PlivoCaller
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.signals import utterances
from voicebridge.testing import start_message as start_event

ROOT = Path(__file__).resolve().parents[2]
FMT = StreamFormat.from_short("l16", 8000)
# Short deadlines, so the tests wait for them to fire in well under a second each.
EDGE = {"header_timeout_s": 0.5, "body_timeout_s": 0.5}
# A normal call's reply may be this much slower beside an attack than alone (loaded CI box).
LATENCY_SLACK_S = 1.0


class CapturedLogs:
    """Everything logged while a test runs: structlog lines and stdlib records (uvicorn's),
    each with its traceback if any, as the text an operator's log would hold."""

    def __init__(self) -> None:
        self.structured = io.StringIO()
        self.stdlib = io.StringIO()
        self.handler = logging.StreamHandler(self.stdlib)
        self.handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    @property
    def text(self) -> str:
        return self.structured.getvalue() + self.stdlib.getvalue()

    @property
    def size(self) -> int:
        return len(self.text.encode())

    def lines(self, event: str) -> list[str]:
        return [line for line in self.text.splitlines() if f"event={event!r}" in line]

    def assert_no_traceback(self) -> None:
        text = self.text
        assert "Traceback" not in text, text[-3000:]
        assert "Exception in ASGI application" not in text, text[-3000:]


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    captured = CapturedLogs()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=captured.structured),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(captured.handler)
    try:
        yield captured
    finally:
        root.removeHandler(captured.handler)
        root.setLevel(old_level)


def settings(**overrides: Any) -> ServiceSettings:
    """Loopback, short edge deadlines, and stream tokens off: these attacks open ``/stream``
    directly (the identity attacks, in ``identity.py``, run with the shipped defaults)."""
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "http": dict(EDGE),
        "security": {"stream_token": "off"},
    }
    base.update(overrides)
    return ServiceSettings.model_validate(base)


@contextlib.asynccontextmanager
async def abuse_service(**overrides: Any) -> AsyncIterator[RunningService]:
    """The echo pipeline on loopback, each call on its own stream clock (lockstep callers)."""
    watch = SessionWatch()
    spec = load_pipeline(ROOT / "pipelines" / "echo.yaml")
    async with running_service(
        settings(**overrides), spec, clock_factory=StreamClock, on_session=watch
    ) as service:
        service.app.state.watch = watch
        yield service


async def normal_call(service: RunningService) -> CallRecord:
    """What Plivo does for one call: POST /answer, then stream to the URL it returned; the
    caller speaks twice and the echo agent must answer both times."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            f"{service.http_base}/answer", data={"CallUUID": "normal-call", "From": "1"}
        )
    assert answer.status_code == 200 and "<Stream" in answer.text
    watch: SessionWatch = service.app.state.watch
    caller = PlivoCaller(service.ws_url, FMT, speed=float("inf"), probe=watch.lockstep)
    audio = utterances(
        [("silence", 0.3), ("speech", 0.8), ("silence", 2.8), ("speech", 0.6), ("silence", 0.2)],
        FMT.sample_rate,
    )
    record = await caller.run(audio, tail_s=1.0)
    assert record.protocol_errors == []
    acks = [a.message["name"] for a in record.sent_by_caller("playedStream")]
    assert acks == ["turn-1/piece-1", "turn-2/piece-1"], "the normal call was not answered"
    return record


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for a condition the test cannot await directly (bounded; not a timing assert)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def echo_spec() -> Any:
    return load_pipeline(ROOT / "pipelines" / "echo.yaml")


def start_message(call_id: str) -> str:
    return start_event(call_id, account_id="MA1")


SPEECH_END_S = 0.8  # the normal call's speech: 0.2 s of silence, then 0.6 s


async def real_time_call(ws_url: str) -> CallRecord:
    """One echo turn at real time, as Plivo streams it."""
    audio = utterances([("silence", 0.2), ("speech", 0.6), ("silence", 1.0)], 8000)
    return await PlivoCaller(ws_url, FMT, speed=1.0).run(audio, tail_s=0.5)


def reply_latency(record: CallRecord) -> float:
    """Seconds from the end of the caller's speech to the first agent audio it received."""
    assert record.protocol_errors == []
    assert [a.message["name"] for a in record.sent_by_caller("playedStream")] == ["turn-1/piece-1"]
    first_audio = record.sent_by_agent("playAudio")[0].t
    return first_audio - SPEECH_END_S
