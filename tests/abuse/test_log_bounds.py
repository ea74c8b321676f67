"""Values off the wire never make the log large: huge checkpoint names, huge extra_headers,
thousands of bad messages and huge callback parameters cost a few bounded lines, and the call
that carries them goes on."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import httpx
from websockets.asyncio.client import connect

from voicebridge.observe.logs import (
    MAX_FIELD_CHARS,
    MAX_MESSAGE_CHARS,
    RedactingFilter,
    Redactor,
    bound_fields,
)
from voicebridge.testing import start_message

from .conftest import CapturedLogs, abuse_service, normal_call, until

BIG = 1 << 20  # room for the 367 KB start message


def start(call_id: str, extra_headers: str = "{}") -> str:
    return start_message(call_id, account_id="MA1", extra_headers=extra_headers)


MEDIA = json.dumps(
    {"event": "media", "media": {"payload": base64.b64encode(b"\0\0" * 160).decode()}}
)


async def test_huge_wire_values_and_thousands_of_bad_messages_keep_the_log_small(
    logs: CapturedLogs,
) -> None:
    headers = ";".join(f"k{i}={'v' * 90}" for i in range(3700))  # about 367 KB
    async with abuse_service(limits={"max_message_bytes": BIG}) as service:
        calls = service.app.state.calls
        async with connect(service.ws_url, max_size=None, compression=None) as ws:
            await ws.send(start("flood", headers))
            for i in range(100):
                await ws.send(json.dumps({"event": "playedStream", "name": f"{i}" * 200_000}))
            for i in range(3000):  # bad messages, each followed by good media: never a streak
                await ws.send(["{not json", '{"event": 5}', json.dumps({"x": "y" * 5000})][i % 3])
                await ws.send(MEDIA)
            await until(lambda: sum(s.core.stats.media for s in calls.sessions()) >= 3000, 60)
            [flood] = calls.sessions()
            assert not flood.ended.is_set(), "the call went on"
            assert flood.core.stats.bad_messages == 3000
            await normal_call(service)  # beside it, a normal call is answered
        await until(lambda: len(calls) == 0)

    text = logs.text
    assert logs.size < 60_000, f"{logs.size} bytes of log"
    assert max(len(line) for line in text.splitlines()) < 5_000
    [started] = [line for line in logs.lines("call_started") if "flood" in line]
    assert "3700 items" in started or "…" in started
    assert len(logs.lines("ack_ignored")) == 1
    assert len(logs.lines("bad_message")) <= 3  # once per reason
    [summary] = logs.lines("repeats_suppressed")
    assert "ack_ignored" in summary and "bad_message" in summary
    logs.assert_no_traceback()


async def test_huge_callback_parameters_are_bounded_in_the_log(logs: CapturedLogs) -> None:
    params = {f"Param{i}": "x" * 3000 for i in range(20)}
    params.update({"Event": "StartStream", "CallUUID": "c" * 10_000})
    async with abuse_service() as service, httpx.AsyncClient() as client:
        for _ in range(5):
            status = await client.post(f"{service.http_base}/status", data=params)
            assert status.status_code == 200
        await client.post(f"{service.http_base}/status", data={"status_event": "clash"})
        await asyncio.gather(
            *(client.post(f"{service.http_base}/transfer", data={"to": "x" * 5000})
              for _ in range(3))
        )  # fmt: skip
    lines = logs.lines("stream_status") + logs.lines("transfer_target_refused")
    assert len(lines) == 9 and max(len(line) for line in lines) < 6_000
    logs.assert_no_traceback()


def test_the_log_setup_caps_any_field_and_any_stdlib_record_that_was_missed() -> None:
    event = bound_fields(
        None, "info", {"event": "x", "text": "y" * 50_000, "nested": {"k": "v" * 50_000}}
    )
    assert len(event["text"]) < MAX_FIELD_CHARS + 20 and event["text"].endswith("[50000 chars]")
    assert len(event["nested"]["k"]) < MAX_FIELD_CHARS + 20
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "", 0, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/stream?q=" + "a" * 50_000), None,
    )  # fmt: skip
    RedactingFilter(Redactor()).filter(record)
    assert len(record.getMessage()) < MAX_MESSAGE_CHARS + 20
