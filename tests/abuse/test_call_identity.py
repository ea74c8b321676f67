"""Who may be which call: no takeover of a live call, no replayed ``/answer``, and Plivo's retry
after a silent drop gets in at once (issue 13, items 2 and 7).

Every attack runs beside a normal call, which must get exactly the replies, at exactly the
stream times, that the same call gets alone.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voicebridge.server.run import RunningService
from voicebridge.session import Session
from voicebridge.sim.answer import plivo_headers
from voicebridge.testing.redis_server import RedisServer

from .identity import (
    AUTH_TOKEN,
    abuse_service,
    normal_call,
    replies,
    start_message,
    stream_url,
)

TOKENS_OFF = {"security": {"stream_token": "off"}}


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for a condition the test cannot await directly (bounded; not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.002)


async def handshake_refusal(url: str) -> str:
    with pytest.raises(InvalidStatus) as err:
        async with connect(url, open_timeout=5):
            pass
    assert err.value.response.status_code == 403
    return err.value.response.body.decode()


async def start_refusal(url: str, call_id: str) -> tuple[int, str]:
    """Open ``url``, claim ``call_id`` with a start; the close code and reason it gets."""
    async with connect(url, open_timeout=5, close_timeout=2) as ws:
        await ws.send(start_message(call_id))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


async def baseline(**overrides: object) -> list[tuple[float, str]]:
    async with abuse_service(**overrides) as service:  # type: ignore[arg-type]
        url = await stream_url(service, "call-alone")
        return replies(await normal_call(service, url, "call-alone"))


def live_session(service: RunningService, call_id: str) -> Session:
    session = service.app.state.sessions.of(call_id)
    assert session is not None and not session.ended.is_set()
    return session


async def test_a_start_for_a_live_call_without_a_token_is_refused() -> None:
    """The shipped defaults, no stream secret configured: tokens are on all the same."""
    alone = await baseline()
    async with abuse_service({"PLIVO_AUTH_TOKEN": AUTH_TOKEN}) as service:
        url = await stream_url(service, "call-1")
        seen: dict[str, object] = {}

        async def attack() -> None:
            seen["live"] = live_session(service, "call-1")
            seen["refusal"] = await handshake_refusal(service.ws_url)

        record = await normal_call(service, url, "call-1", attack)
    assert seen["refusal"] == "stream token refused: missing"
    assert replies(record) == alone and alone  # the live call got every reply, on time
    session = seen["live"]
    assert isinstance(session, Session) and session.end_reason == "socket_closed"
    assert service.app.state.stream_guard.refusals == {"missing": 1}


async def test_with_tokens_off_a_start_for_a_live_call_is_closed_with_1008() -> None:
    alone = await baseline(**TOKENS_OFF)
    async with abuse_service(**TOKENS_OFF) as service:
        url = await stream_url(service, "call-1")
        seen: dict[str, object] = {}

        async def attack() -> None:
            seen["live"] = live_session(service, "call-1")
            seen["refusal"] = await start_refusal(service.ws_url, "call-1")
            seen["still_live"] = not live_session(service, "call-1").ended.is_set()

        record = await normal_call(service, url, "call-1", attack)
    assert seen["refusal"] == (1008, "call is live on another stream")
    assert seen["still_live"] is True
    assert replies(record) == alone
    assert service.app.state.legs.refused == 1


async def test_the_calls_own_token_cannot_open_a_second_leg_while_the_call_is_live() -> None:
    alone = await baseline()
    async with abuse_service() as service:
        url = await stream_url(service, "call-1")
        seen: dict[str, object] = {}

        async def attack() -> None:
            seen["copied_url"] = await handshake_refusal(url)  # a copy of Plivo's stream URL
            async with httpx.AsyncClient() as client:  # a fresh, validly signed /answer
                params = {"CallUUID": "call-1", "From": "sim", "Direction": "inbound"}
                answer = f"{service.http_base}/answer"
                headers = plivo_headers("POST", answer, params, AUTH_TOKEN)
                response = await client.post(answer, data=params, headers=headers)
            seen["second_answer"] = (response.status_code, response.text)

        record = await normal_call(service, url, "call-1", attack)
    assert seen["copied_url"] == "stream token refused: in_use"
    assert seen["second_answer"] == (409, "conflict: this call already has a stream")
    assert replies(record) == alone


async def test_a_second_token_minted_before_the_call_cannot_take_it_over() -> None:
    alone = await baseline()
    async with abuse_service() as service:
        url = await stream_url(service, "call-1")
        other = await stream_url(service, "call-1")  # minted before any leg connected
        assert other != url
        seen: dict[str, object] = {}

        async def attack() -> None:
            seen["refusal"] = await start_refusal(other, "call-1")

        record = await normal_call(service, url, "call-1", attack)
    assert seen["refusal"] == (1008, "call is live on another stream")
    assert replies(record) == alone


async def test_a_replayed_signed_answer_is_refused() -> None:
    async with abuse_service() as service, httpx.AsyncClient() as client:
        params = {"CallUUID": "call-1", "From": "sim", "Direction": "inbound"}
        answer = f"{service.http_base}/answer"
        headers = plivo_headers("POST", answer, params, AUTH_TOKEN)
        first = await client.post(answer, data=params, headers=headers)
        replay = await client.post(answer, data=params, headers=headers)
        assert first.status_code == 200 and "token=" in first.text
        assert (replay.status_code, replay.text) == (403, "forbidden: replayed request")
        assert service.app.state.signature_guard.refusals == {"replayed_request": 1}
        # Plivo's next request (a new nonce) is still answered; and the call still runs.
        url = await stream_url(service, "call-2")
        await normal_call(service, url, "call-2")


async def test_a_signed_answer_replayed_to_another_worker_is_refused(
    redis_server: RedisServer,
) -> None:
    """With ``state: redis://…`` the nonces are shared: two workers, one replay refused."""
    shared = {"state": redis_server.url}
    async with abuse_service(**shared) as one, abuse_service(**shared) as two:
        params = {"CallUUID": "call-1", "From": "sim", "Direction": "inbound"}
        signed_url = f"{one.http_base}/answer"  # the one public URL both workers sit behind
        headers = plivo_headers("POST", signed_url, params, AUTH_TOKEN)
        async with httpx.AsyncClient() as client:
            first = await client.post(signed_url, data=params, headers=headers)
            # The same bytes sent to the other worker, with the Host Plivo signed.
            replay = await client.post(
                f"{two.http_base}/answer",
                data=params,
                headers={**headers, "Host": f"127.0.0.1:{one.port}"},
            )
        assert first.status_code == 200
        nonces = two.app.state.signature_guard.nonces
        assert (nonces.store_errors, nonces.shared) == (0, two.app.state.resumes.store)
        assert (replay.status_code, replay.text) == (403, "forbidden: replayed request")


def media(frames: int) -> list[str]:
    payload = base64.b64encode(np.zeros(160, np.int16).tobytes()).decode("ascii")
    message = f'{{"event": "media", "media": {{"track": "inbound", "payload": "{payload}"}}}}'
    return [message] * frames


async def test_a_silent_drop_resumes_within_the_quiet_threshold_with_tokens_on() -> None:
    """The old socket never closes (no FIN): before, its token stayed ``in_use`` until the ping
    timeout (~40 s). Now the retry with the call's own token takes over once the leg has been
    silent for ``leg_quiet_s``, and the call resumes."""
    quiet = {"security": {"leg_quiet_s": 0.2}}
    async with abuse_service(**quiet) as service:
        sessions = service.app.state.sessions
        url = await stream_url(service, "call-1")
        async with connect(url, open_timeout=5, close_timeout=1) as first:
            await first.send(start_message("call-1", "stream-a"))
            for message in media(25):
                await first.send(message)
            await until(lambda: sessions.of("call-1") is not None)
            old = live_session(service, "call-1")
            await until(lambda: old.core.stats.media == 25)
            # The leg is still sending: a retry now is a second party, not Plivo's.
            assert await handshake_refusal(url) == "stream token refused: in_use"
            # Silent drop: nothing more on the old socket. After the threshold, Plivo retries.
            await asyncio.sleep(0.25)
            async with connect(url, open_timeout=5, close_timeout=1) as retry:
                await retry.send(start_message("call-1", "stream-a"))
                await asyncio.wait_for(old.ended.wait(), 10)
                await until(lambda: sessions.all[-1].resumed_from is not None)
                new = sessions.all[-1]
                assert new is not old and not new.ended.is_set()
                assert old.end_reason == "suspended"
                for message in media(10):
                    await retry.send(message)
                await until(lambda: new.core.stats.media == 10)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(first.recv(), 10)
                assert (first.close_code, first.close_reason) == (1001, "stream replaced")
                assert service.app.state.legs.taken_over == 1
