"""Stream tokens through the running service: /answer mints, /stream admits or refuses.

Refusals before the WebSocket opens are HTTP 403 with ``stream token refused: <reason>``; a
``start`` for another call than the token's closes the socket with 1008 and the same text.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from structlog.testing import capture_logs
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voicebridge.config import ConfigError
from voicebridge.plivo.formats import StreamFormat
from voicebridge.server.run import RunningService
from voicebridge.server.security import SecurityConfig
from voicebridge.sim.answer import answer_call
from voicebridge.sim.caller import PlivoCaller
from voicebridge.sim.signals import utterances

from .conftest import ENV, SECRETS, STREAM_SECRET, WallClock, secured_service, settings

FMT = StreamFormat.from_short("l16", 16000)
CALL_ID = "6d9b0c1e-2f3a-4b5c-8d7e-9f0a1b2c3d4e"


async def stream_url(service: RunningService, call_id: str = CALL_ID) -> str:
    answered = await answer_call(f"{service.http_base}/answer", call_uuid=call_id, environ=ENV)
    return answered.url


def start(call_id: str) -> str:
    return json.dumps(
        {
            "sequenceNumber": 0,
            "event": "start",
            "start": {
                "callId": call_id,
                "streamId": "stream-1",
                "accountId": "MA123",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 16000},
            },
            "extra_headers": "{}",
        }
    )


async def refused(url: str) -> str:
    """The 403 body of a refused handshake."""
    with pytest.raises(InvalidStatus) as err:
        async with connect(url, open_timeout=5):
            pass
    assert err.value.response.status_code == 403
    return err.value.response.body.decode()


async def open_call(url: str, call_id: str = CALL_ID) -> ClientConnection:
    ws = await connect(url, open_timeout=5, close_timeout=2)
    await ws.send(start(call_id))
    return ws


async def drop(service: RunningService, ws: ClientConnection) -> None:
    """A network failure: the TCP connection goes without a close frame (Plivo then retries)."""
    session = service.app.state.sessions.session
    ws.transport.abort()
    await session.ended.wait()


async def call_runs(service: RunningService, url: str, call_id: str = CALL_ID) -> None:
    """A whole echo call over ``url``: the caller speaks, hears itself, hangs up (close 1000)."""
    watch = service.app.state.sessions
    caller = PlivoCaller(url, FMT, speed=float("inf"), probe=watch.lockstep, call_id=call_id)
    audio = utterances([("silence", 0.2), ("speech", 0.6), ("silence", 1.0)], 16000)
    record = await caller.run(audio, tail_s=0.5)
    assert record.protocol_errors == []
    assert record.sent_by_agent("playAudio"), "the agent never answered"
    assert record.closed_by == "caller"
    await watch.session.ended.wait()


async def test_a_valid_token_runs_the_call() -> None:
    async with secured_service() as service:
        url = await stream_url(service)
        query = parse_qs(urlsplit(url).query)
        assert list(query) == ["token"] and len(query["token"][0]) < 200
        await call_runs(service, url)


async def test_missing_and_tampered_tokens_are_refused() -> None:
    async with secured_service() as service:
        url = await stream_url(service)
        base = url.split("?")[0]
        with capture_logs() as entries:
            assert await refused(base) == "stream token refused: missing"
            token = parse_qs(urlsplit(url).query)["token"][0]
            payload, mac = token.split(".")
            tampered = f"{base}?token={payload[:-1]}{'A' if payload[-1] != 'A' else 'B'}.{mac}"
            assert await refused(tampered) == "stream token refused: bad_signature"
            assert await refused(f"{base}?token=garbage") == "stream token refused: malformed"
        assert [e["reason"] for e in entries if e["event"] == "stream_refused"] == [
            "missing",
            "bad_signature",
            "malformed",
        ]
        assert token not in repr(entries)
        for secret in SECRETS:
            assert secret not in repr(entries)
        # The tampering did not spend the real token.
        await call_runs(service, url)
        guard = service.app.state.stream_guard
        assert guard.refusals == {"missing": 1, "bad_signature": 1, "malformed": 1}
        assert guard.admitted == 1


async def test_an_expired_token_is_refused() -> None:
    clock = WallClock()
    async with secured_service(clock=clock) as service:
        url = await stream_url(service)
        clock.now += 61
        assert await refused(url) == "stream token refused: expired"


async def test_a_token_of_another_secret_is_refused() -> None:
    async with secured_service() as other:
        foreign_url = await stream_url(other)
    async with secured_service({**ENV, "VOICEBRIDGE_STREAM_SECRET": "x" * 32}) as service:
        port_url = foreign_url.replace(f":{urlsplit(foreign_url).port}/", f":{service.port}/")
        assert await refused(port_url) == "stream token refused: bad_signature"


async def test_a_token_for_another_call_is_closed_with_1008() -> None:
    async with secured_service() as service:
        url = await stream_url(service, "call-A")
        ws = await open_call(url, call_id="call-B")
        with pytest.raises(ConnectionClosed) as err:
            await ws.recv()
        assert err.value.rcvd is not None
        assert err.value.rcvd.code == 1008
        assert err.value.rcvd.reason == "stream token refused: foreign_call"
        session = service.app.state.sessions.session
        await session.ended.wait()
        assert session.end_reason == "stream_token_foreign_call"
        assert session.pipeline is None  # the stranger's call never started
        assert service.app.state.stream_guard.refusals == {"foreign_call": 1}


async def test_one_live_connection_per_token() -> None:
    async with secured_service() as service:
        url = await stream_url(service)
        first = await open_call(url)
        assert await refused(url) == "stream token refused: in_use"
        await drop(service, first)
        # After the drop, Plivo's retry with the same URL is let in (the call may resume).
        retry = await open_call(url)
        await retry.close()


async def test_a_fourth_connection_is_refused() -> None:
    async with secured_service() as service:
        url = await stream_url(service)
        for _ in range(3):  # the first connection and Plivo's two retries
            ws = await open_call(url)
            await drop(service, ws)
        assert await refused(url) == "stream token refused: reused"


async def test_no_connection_after_the_call_ended_normally() -> None:
    async with secured_service() as service:
        url = await stream_url(service)
        await call_runs(service, url)
        assert await refused(url) == "stream token refused: call_ended"


async def test_a_retry_after_the_token_expired_is_let_in_within_the_window() -> None:
    """Mid-call drops happen long after /answer: the retry presents an old token."""
    clock = WallClock()
    async with secured_service(clock=clock) as service:
        url = await stream_url(service)
        ws = await open_call(url)
        clock.now += 600  # ten minutes into the call
        await drop(service, ws)
        clock.now += 5
        retry = await open_call(url)
        await retry.close()
        await service.app.state.sessions.session.ended.wait()
        clock.now += 120  # too long after the last drop
        assert await refused(url) == "stream token refused: expired"


async def test_tokens_are_on_by_default_with_a_generated_secret() -> None:
    with capture_logs() as entries:
        async with secured_service({}) as service:
            url = await stream_url(service)
            assert "?token=" in url
            assert await refused(service.ws_url) == "stream token refused: missing"
            await call_runs(service, url)
    (made,) = [e for e in entries if e["event"] == "stream_secret_generated"]
    assert made["scope"] == "process"
    guard = service.app.state.stream_guard
    assert guard.codec.verify(parse_qs(urlsplit(url).query)["token"][0]).call_id == CALL_ID


async def test_off_mode_needs_no_secret() -> None:
    off = {"security": {"stream_token": "off"}}
    async with secured_service({}, **off) as service:
        url = await stream_url(service)
        assert "?" not in url
        await call_runs(service, url)
    async with secured_service(ENV, **off) as service:
        url = await stream_url(service)
        assert "?" not in url
        await call_runs(service, service.ws_url)


def test_serve_workers_share_one_generated_secret() -> None:
    """``serve --workers N``: the secret goes into the environment the workers inherit."""
    from voicebridge.server.security import provide_stream_secret

    env: dict[str, str] = {}
    with capture_logs() as entries:
        assert provide_stream_secret(settings(security={"stream_token": "on"}, workers=1), env)
        made = env["VOICEBRIDGE_STREAM_SECRET"]
        assert not provide_stream_secret(settings(security={"stream_token": "on"}), env)
    assert len(made) >= 32 and env["VOICEBRIDGE_STREAM_SECRET"] == made
    assert made not in repr(entries)
    assert [e["scope"] for e in entries if e["event"] == "stream_secret_generated"] == ["workers"]
    with capture_logs() as entries:
        one = SecurityConfig.from_env(settings(security={"stream_token": "on"}), env)
        two = SecurityConfig.from_env(settings(security={"stream_token": "on"}), env)
    assert one.stream_secret == two.stream_secret == made.encode()  # workers agree
    assert not one.secret_generated and entries == []
    assert provide_stream_secret(settings(security={"stream_token": "auto"}), {})
    assert not provide_stream_secret(settings(security={"stream_token": "off"}), {})


async def test_answer_without_call_uuid_gets_no_token() -> None:
    import httpx

    async with secured_service({"VOICEBRIDGE_STREAM_SECRET": STREAM_SECRET}) as service:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{service.http_base}/answer", data={"From": "1"})
        assert response.status_code == 400 and "CallUUID" in response.text


@pytest.mark.parametrize(
    ("mode", "env", "message"),
    [
        ("on", {"VOICEBRIDGE_STREAM_SECRET": "short"}, "at least 16 bytes"),
        ("auto", {"VOICEBRIDGE_STREAM_SECRET": "short"}, "at least 16 bytes"),
    ],
)
def test_stream_token_startup_errors(mode: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        SecurityConfig.from_env(settings(security={"stream_token": mode}), env)
    assert message in str(err.value)
    assert "short" not in str(err.value)  # the error names the variable, never its value


def test_settings_switches() -> None:
    defaults = {"security": {"stream_token": "auto"}}  # the shipped default
    generated = SecurityConfig.from_env(settings(**defaults), {})
    assert generated.stream_tokens and generated.secret_generated
    assert SecurityConfig.from_env(settings(**defaults), ENV).stream_tokens
    assert not SecurityConfig.from_env(settings(**defaults), ENV).secret_generated
    off = settings(security={"stream_token": False, "stream_token_ttl_s": 30})
    config: Any = SecurityConfig.from_env(off, ENV)
    assert not config.stream_tokens and config.stream_secret is None
