"""Slow-loris against the HTTP routes: requests that never finish their headers or their body
are closed at the configured deadlines, a client that leaves mid-body is an info line, and a
normal call beside them goes on. No traceback in the logs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from voicebridge.server.run import RunningService

from .conftest import CapturedLogs, abuse_service, normal_call, until

WAIT_S = 10.0  # how long a test waits for the server's close before it calls the deadline missed

PARTIAL_HEAD = b"POST /answer HTTP/1.1\r\nHost: agent\r\nX-Slow: "
BODY_HEAD = (
    b"POST /answer HTTP/1.1\r\nHost: agent\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 400\r\n\r\n"
)


async def server_answer(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes; fails if it never closes."""
    return await asyncio.wait_for(reader.read(), WAIT_S)


async def open_partial(service: RunningService, data: bytes) -> asyncio.StreamReader:
    """A connection that sends ``data`` and then nothing (its writer is kept open: a dropped
    StreamWriter would close the connection itself)."""
    reader, writer = await asyncio.open_connection(service.host, service.port)
    writer.write(data)
    await writer.drain()
    _WRITERS.append(writer)
    return reader


_WRITERS: list[asyncio.StreamWriter] = []


@pytest.fixture(autouse=True)
async def _close_writers() -> AsyncIterator[None]:
    yield
    for writer in _WRITERS:
        writer.close()
    _WRITERS.clear()


async def dribble(writer: asyncio.StreamWriter, answer: asyncio.Future[bytes]) -> None:
    """One body byte at a time, until the server's answer has arrived (a client that reads its
    answer stops sending)."""
    with contextlib.suppress(ConnectionError):
        while not answer.done():
            writer.write(b"a")
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(answer), 0.05)


async def test_partial_headers_and_a_dribbled_body_are_closed_beside_a_normal_call(
    logs: CapturedLogs,
) -> None:
    async with abuse_service(http={"header_timeout_s": 0.5, "body_timeout_s": 0.5}) as service:
        loris = [await open_partial(service, PARTIAL_HEAD) for _ in range(100)]
        reader, writer = await asyncio.open_connection(service.host, service.port)
        writer.write(BODY_HEAD)
        body = asyncio.create_task(server_answer(reader))
        dribbler = asyncio.create_task(dribble(writer, body))

        await normal_call(service)  # the service still answers and streams
        answers = await asyncio.gather(*(server_answer(r) for r in loris))
        body_answer = await body
        await dribbler
        writer.close()

    # 32 per address may be incomplete at once (the default): older ones made room for newer
    # ones (503); the rest ran into the header deadline (408). None stayed open.
    timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408")]
    shed = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
    assert len(timed_out) + len(shed) == 100 and len(timed_out) >= 30
    assert b"request timeout: headers" in timed_out[0]
    assert body_answer.startswith(b"HTTP/1.1 408") and b"request timeout: body" in body_answer
    logs.assert_no_traceback()
    # Rate-limited: a hundred closes are not a hundred lines.
    assert len(logs.lines("http_request_timeout")) + len(logs.lines("http_request_shed")) <= 20


async def test_bytes_a_client_sends_after_the_408_do_not_reset_the_connection() -> None:
    """The server half-closes and drops late bytes for a moment (a lingering close): closing
    at once would answer them with a reset, which destroys a 408 the client has not read yet."""
    async with abuse_service(http={"body_timeout_s": 0.3}) as service:
        reader, writer = await asyncio.open_connection(service.host, service.port)
        writer.write(BODY_HEAD)
        answer = await server_answer(reader)  # the 408, then the server's end of the stream
        for _ in range(3):  # the rest of the body, sent late
            writer.write(b"a" * 100)
            await writer.drain()  # raises once the server has reset the connection
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"request timeout: body" in answer
    assert reader.exception() is None


async def test_under_the_per_peer_cap_each_partial_head_gets_its_own_deadline(
    logs: CapturedLogs,
) -> None:
    edge = {"header_timeout_s": 0.3, "max_incomplete_per_peer": 200, "max_incomplete": 200}
    async with abuse_service(http=edge) as service:
        readers = [await open_partial(service, PARTIAL_HEAD) for _ in range(100)]
        idle = [await open_partial(service, b"") for _ in range(5)]  # connect, send nothing
        answers = await asyncio.gather(*(server_answer(r) for r in readers + idle))
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers)
    logs.assert_no_traceback()


async def test_the_oldest_incomplete_request_makes_room_at_the_cap() -> None:
    edge = {"header_timeout_s": 30.0, "max_incomplete_per_peer": 4}
    async with abuse_service(http=edge) as service:
        from voicebridge.server.http_edge import incomplete_requests

        await open_partial(service, b"")  # a first connection, so the server's tracker exists
        tracker = incomplete_requests(service.server.server_state)
        assert tracker is not None
        now = [tracker.time_fn()]
        tracker.time_fn = lambda: now[0]  # the tracker's clock, moved by hand
        oldest = await open_partial(service, PARTIAL_HEAD)
        await until(lambda: len(tracker) == 2)
        burst = [await open_partial(service, PARTIAL_HEAD) for _ in range(4)]
        await until(lambda: len(tracker) == 6)  # all young: a burst is let in whole
        assert tracker.evicted == 0
        now[0] += 30.0 / 4  # the oldest have had their chance to send a head
        await open_partial(service, PARTIAL_HEAD)  # one too many: the oldest goes
        await until(lambda: tracker.evicted == 1)  # the first connection, which sent nothing
        await normal_call(service)  # a complete request always gets through, shedding more
        assert (await server_answer(oldest)).startswith(b"HTTP/1.1 503")
        assert len(burst) == 4


async def test_a_keep_alive_connection_gets_a_header_deadline_for_its_next_request() -> None:
    async with abuse_service(http={"header_timeout_s": 0.5}) as service:
        reader, writer = await asyncio.open_connection(service.host, service.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: agent\r\n\r\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"}"), WAIT_S)
        assert first.startswith(b"HTTP/1.1 200")
        writer.write(b"GET /health HTTP/1.1\r\nHost: ag")  # the next request, never finished
        await writer.drain()
        assert (await server_answer(reader)).startswith(b"HTTP/1.1 408")
        writer.close()


async def test_a_client_that_leaves_mid_body_is_an_info_line(logs: CapturedLogs) -> None:
    async with abuse_service(http={"body_timeout_s": 30.0}) as service:
        reader, writer = await asyncio.open_connection(service.host, service.port)
        writer.write(BODY_HEAD + b"CallUUID=abc")
        await writer.drain()
        writer.close()
        await until(lambda: bool(logs.lines("http_client_gone")))
        await normal_call(service)
    [line] = logs.lines("http_client_gone")
    assert "level='info'" in line and "path='/answer'" in line
    logs.assert_no_traceback()
