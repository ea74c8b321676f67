"""`voicebridge serve --workers 2`: Plivo's hang-up callbacks land on either worker, and a
campaign's ``GET /calls/{request_uuid}``, whichever worker answers it, sees every outcome; with
the workers' shared directory (no Redis) and with a real Redis as the service's state."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from pathlib import Path

import httpx
import pytest

from voicebridge.sim.answer import plivo_headers
from voicebridge.testing.plivo_rest_fake import FakePlivoRest
from voicebridge.testing.redis_server import REDIS_SERVER, RedisServer, redis_available

from .serve_process import ServeProcess

KEY = "workers-outcome-key-0123456789"
AUTH_ID = "MAWORKERS00000000001"
TOKEN = "workers-plivo-token"
CALLS = 6
BURST = 6  # hang-up callbacks sent at once; the kernel picks the worker of each
HANGUP_DEADLINE_S = 60.0
POLLS = 6  # per call, each on a new connection


@pytest.fixture(params=["shared_dir", "redis"])
def state_args(request) -> Iterator[tuple[str, ...]]:
    if request.param == "shared_dir":
        yield ()
        return
    if not redis_available():
        pytest.skip(f"redis-server is not installed ({REDIS_SERVER}); .ci/run installs it")
    redis = RedisServer()
    redis.start()
    try:
        yield ("--state", redis.url)
    finally:
        redis.stop()


async def test_every_poll_sees_outcomes_from_either_worker(
    tmp_path: Path, state_args: tuple[str, ...]
) -> None:
    async with FakePlivoRest(AUTH_ID, TOKEN) as plivo:
        env = {
            "VOICEBRIDGE_API_KEY": KEY,
            "VOICEBRIDGE_FROM_NUMBER": "+14155550100",
            "PLIVO_AUTH_ID": AUTH_ID,
            "PLIVO_AUTH_TOKEN": TOKEN,
            "PLIVO_API_URL": plivo.base_url,
        }
        serve = ServeProcess(tmp_path, "--workers", "2", *state_args, env=env)
        try:
            workers = await serve.worker_pids(2)
            fresh = httpx.Limits(max_keepalive_connections=0)  # each request: any worker
            auth = {"Authorization": f"Bearer {KEY}"}
            async with httpx.AsyncClient(base_url=serve.base, limits=fresh, timeout=5) as client:
                requests = []
                for n in range(CALLS):
                    placed = await client.post(
                        "/calls", json={"to": f"+1555020{n:04d}"}, headers=auth
                    )
                    assert placed.status_code == 201, placed.text
                    requests.append(placed.json()["request_uuid"])
                # Hang-up callbacks, signed as Plivo signs them, in concurrent bursts (an idle
                # worker that keeps winning the accept race is then busy) until both took some.
                hangup_url = f"{serve.base}/hangup"
                sent = 0
                loop = asyncio.get_running_loop()
                deadline = loop.time() + HANGUP_DEADLINE_S
                while {r["pid"] for r in outcome_logs(serve)} != workers:
                    assert loop.time() < deadline, f"every callback went to one worker: {sent}"
                    burst = [
                        hangup(client, hangup_url, requests, n % CALLS)
                        for n in range(sent, sent + BURST)
                    ]
                    answers = await asyncio.gather(*burst)
                    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
                    sent += BURST
                    await wait_for_log(serve, sent)
                # Every poll, on whichever worker, sees every outcome.
                for n, request_uuid in enumerate(requests[: min(sent, CALLS)]):
                    for _ in range(POLLS):
                        found = await client.get(f"/calls/{request_uuid}", headers=auth)
                        assert found.status_code == 200, found.text
                        body = found.json()
                        assert body["status"] == ("busy" if n % 2 else "completed")
                        assert body["call_uuid"] == f"call-{n}"
                        assert body["duration_s"] == (0.0 if n % 2 else 12.0)
        finally:
            serve.stop()


def hangup(
    client: httpx.AsyncClient, url: str, requests: list[str], n: int
) -> Awaitable[httpx.Response]:
    """Plivo's signed hang-up callback for call ``n`` (odd calls were busy)."""
    params = {
        "RequestUUID": requests[n],
        "CallUUID": f"call-{n}",
        "CallStatus": "busy" if n % 2 else "completed",
        "HangupCause": "USER_BUSY" if n % 2 else "NORMAL_CLEARING",
        "Duration": "0" if n % 2 else "12",
    }
    return client.post("/hangup", data=params, headers=plivo_headers("POST", url, params, TOKEN))


def outcome_logs(serve: ServeProcess) -> list[dict]:
    return [r for r in serve.records() if r.get("event") == "call_outcome" and r.get("known")]


async def wait_for_log(serve: ServeProcess, count: int) -> None:
    """Until the service logged ``count`` known outcomes (its log is read by a thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(outcome_logs(serve)) < count:
        assert loop.time() < deadline, "\n".join(serve.lines[-20:])
        await asyncio.sleep(0.01)
