"""`voicebridge serve --log-format json`: every line the process prints is one JSON object,
uvicorn's and libraries' lines included, and the lines logged inside a call carry its ids."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .library_stage import LOGGER
from .serve_process import ServeProcess

FIELDS = {"event", "level", "logger", "timestamp", "pid"}


async def bad_request(port: int) -> None:
    """Bytes that are not HTTP: uvicorn's h11 protocol logs a warning of its own."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"NOT HTTP AT ALL\x00\r\n\r\n")
    await writer.drain()
    await reader.read()  # the server closes the connection
    writer.close()


def check_lines(records: list[dict[str, Any]]) -> None:
    for record in records:
        assert record.keys() >= FIELDS, record
        assert record["level"] in {"debug", "info", "warning", "error", "critical"}, record
        assert record["timestamp"].endswith("Z"), record


async def test_every_line_is_json_and_call_lines_carry_the_call(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path)
    try:
        await serve.worker_pids(1)
        await serve.call("json-call-1")
        await bad_request(serve.port)
    finally:
        code = serve.stop()
    assert code == 0, "\n".join(serve.lines[-30:])
    records = serve.records()  # every line, or the test fails
    check_lines(records)
    loggers = {r["logger"] for r in records}
    assert {"uvicorn.error", "voicebridge.server", "voicebridge.session", LOGGER} <= loggers
    # uvicorn's own lines: the WebSocket handshake (its token masked) and the bad request.
    uvicorn = [r["event"] for r in records if r["logger"] == "uvicorn.error"]
    accepted = next(e for e in uvicorn if '"WebSocket /stream' in e)
    assert "token=***" in accepted and "[accepted]" in accepted
    assert any(e.startswith("Invalid HTTP request") for e in uvicorn), uvicorn
    # Inside the call, structlog's lines and the library's stdlib line carry both ids.
    call = [r for r in records if r.get("call_id") == "json-call-1"]
    assert {r["stream_id"] for r in call} == {"json-call-1-stream"}
    library = [r for r in call if r["logger"] == LOGGER]
    assert [(r["event"], r["level"]) for r in library] == [
        ("sdk session opened (stdlib)", "warning")
    ]
    assert any(r["logger"] == "voicebridge.session" for r in call)
    # Other connections' lines are not tagged with the call.
    assert not any("call_id" in r for r in records if r["event"].startswith("Invalid HTTP"))
