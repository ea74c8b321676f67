"""PlivoRest against FakePlivoRest: real HTTP on 127.0.0.1, a recorded sleep instead of waiting."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from voicebridge.telephony.plivo_rest import PlivoCredentials, PlivoRest, PlivoRestError
from voicebridge.testing.plivo_rest_fake import FakePlivoRest

AUTH_ID = "MAFAKEACCOUNT0000001"
TOKEN = "s3cr3t-t0ken-value"
CALL = "4d04c52e-cea3-4458-bbdb-0bfc314ee7cd"
CALL_PATH = f"/v1/Account/{AUTH_ID}/Call/{CALL}/"
CREDS = PlivoCredentials(AUTH_ID, TOKEN)


class RecordedSleep:
    """Stands in for asyncio.sleep: remembers the backoff asked for, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class WireRecorder(httpx.AsyncBaseTransport):
    """Forwards to a real transport and keeps each request exactly as httpx sends it."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def fake() -> AsyncIterator[FakePlivoRest]:
    async with FakePlivoRest(AUTH_ID, TOKEN, live_calls={CALL}) as server:
        yield server


@pytest.fixture
def sleep() -> RecordedSleep:
    return RecordedSleep()


def client(fake: FakePlivoRest, sleep: RecordedSleep, **options: Any) -> PlivoRest:
    creds = options.pop("credentials", CREDS)
    return PlivoRest(creds, base_url=fake.base_url, sleep=sleep, **options)


def free_port() -> int:
    """A loopback port with nothing listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- hang up ------------------------------------------------------------------------------------


async def test_hangup_sends_delete_with_basic_auth(fake: FakePlivoRest, sleep: RecordedSleep):
    wire = WireRecorder()
    async with client(fake, sleep, transport=wire) as rest:
        assert await rest.hangup(CALL) == "hung_up"

    [sent] = wire.sent
    assert sent.method == "DELETE"
    assert str(sent.url) == f"{fake.base_url}{CALL_PATH}"
    expected = base64.b64encode(f"{AUTH_ID}:{TOKEN}".encode()).decode()
    assert sent.headers["authorization"] == f"Basic {expected}"

    [seen] = fake.requests
    assert (seen.method, seen.path, seen.auth, seen.auth_id) == ("DELETE", CALL_PATH, "ok", AUTH_ID)
    assert seen.status == 204
    assert seen.body == b""
    assert "authorization" not in seen.headers  # the fake keeps no secrets either
    assert fake.ended_calls == {CALL}
    assert CALL not in fake.live_calls
    assert sleep.delays == []


async def test_hangup_of_an_ended_call_is_already_ended(fake: FakePlivoRest, sleep: RecordedSleep):
    async with client(fake, sleep) as rest:
        assert await rest.hangup(CALL) == "hung_up"
        assert await rest.hangup(CALL) == "already_ended"
        assert await rest.hangup("never-existed") == "already_ended"
    assert [r.status for r in fake.requests] == [204, 404, 404]
    assert sleep.delays == []


async def test_hangup_retries_server_errors_with_exponential_backoff(
    fake: FakePlivoRest, sleep: RecordedSleep
):
    fake.fail_next(2, status=500)
    async with client(fake, sleep, retries=3, backoff_s=0.25) as rest:
        assert await rest.hangup(CALL) == "hung_up"
    assert [r.status for r in fake.requests] == [500, 500, 204]
    assert sleep.delays == [0.25, 0.5]


async def test_hangup_gives_up_after_the_attempts_and_names_the_call(
    fake: FakePlivoRest, sleep: RecordedSleep
):
    fake.fail_next(5, status=503)
    async with client(fake, sleep, retries=3, backoff_s=0.1) as rest:
        with pytest.raises(PlivoRestError) as caught:
            await rest.hangup(CALL)
    err = caught.value
    assert (err.status, err.reason, err.attempts) == (503, "server_error", 3)
    assert CALL in str(err)
    assert "hangup" in str(err)
    assert "fake fault" in str(err)  # Plivo's {"error": ...} text
    assert len(fake.requests) == 3
    assert sleep.delays == pytest.approx([0.1, 0.2])
    assert fake.live_calls == {CALL}


async def test_unauthorized_is_not_retried_and_never_shows_the_token(sleep: RecordedSleep):
    async with FakePlivoRest(AUTH_ID, "the-right-token", live_calls={CALL}) as fake:
        with capture_logs() as logs:
            async with client(fake, sleep) as rest:
                with pytest.raises(PlivoRestError) as caught:
                    await rest.hangup(CALL)
    err = caught.value
    assert (err.status, err.reason, err.attempts) == (401, "unauthorized", 1)
    assert "Authentication failed" in str(err)
    assert CALL in str(err)
    for text in (str(err), repr(err), repr(err.args), repr(logs)):
        assert TOKEN not in text
    assert len(fake.requests) == 1
    assert fake.requests[0].auth == "bad"
    assert sleep.delays == []
    assert fake.live_calls == {CALL}


@pytest.mark.parametrize(("status", "reason"), [(400, "bad_request"), (403, "forbidden")])
async def test_client_errors_are_not_retried(
    fake: FakePlivoRest, sleep: RecordedSleep, status: int, reason: str
):
    fake.queue_statuses([status])
    async with client(fake, sleep) as rest:
        with pytest.raises(PlivoRestError) as caught:
            await rest.hangup(CALL)
    assert (caught.value.status, caught.value.reason) == (status, reason)
    assert len(fake.requests) == 1


async def test_rate_limit_honours_a_short_retry_after(fake: FakePlivoRest, sleep: RecordedSleep):
    fake.fail_next(1, status=429, retry_after=2)
    fake.fail_next(1, status=429, retry_after=3600)  # too long to wait on a live call: backoff
    async with client(fake, sleep, backoff_s=0.25) as rest:
        assert await rest.hangup(CALL) == "hung_up"
    assert sleep.delays == [2.0, 0.5]
    assert [r.status for r in fake.requests] == [429, 429, 204]


async def test_hangup_timeout_is_retried(fake: FakePlivoRest, sleep: RecordedSleep):
    # The first answer is too slow, though Plivo did end the call: the retry then learns that
    # the call is gone, which for a hang-up is success.
    fake.slow_next(1, delay_s=2.0)
    async with client(fake, sleep, timeout_s=0.1) as rest:
        assert await rest.hangup(CALL) == "already_ended"
    assert [r.status for r in fake.requests] == [204, 404]
    assert sleep.delays == [0.25]


async def test_hangup_times_out_for_good(sleep: RecordedSleep):
    async with FakePlivoRest(AUTH_ID, TOKEN, live_calls={CALL}, delay_s=2.0) as fake:
        rest = client(fake, sleep, timeout_s=0.1, retries=2)
        async with rest:
            with pytest.raises(PlivoRestError) as caught:
                await rest.hangup(CALL)
    err = caught.value
    assert (err.status, err.reason, err.attempts) == (None, "timeout", 2)
    assert CALL in str(err)
    assert len(fake.requests) == 2


async def test_hangup_retries_refused_connections(sleep: RecordedSleep):
    rest = PlivoRest(CREDS, base_url=f"http://127.0.0.1:{free_port()}", sleep=sleep, retries=3)
    async with rest:
        with pytest.raises(PlivoRestError) as caught:
            await rest.hangup(CALL)
    assert (caught.value.reason, caught.value.attempts) == ("network", 3)
    assert sleep.delays == [0.25, 0.5]


async def test_call_uuid_is_quoted_as_one_path_segment(fake: FakePlivoRest, sleep: RecordedSleep):
    odd = "a/b c?d"
    fake.add_call(odd)
    async with client(fake, sleep) as rest:
        assert await rest.hangup(odd) == "hung_up"
    assert fake.requests[0].path == f"/v1/Account/{AUTH_ID}/Call/a%2Fb%20c%3Fd/"
    assert fake.ended_calls == {odd}


@pytest.mark.parametrize("bad", ["", "   "])
async def test_empty_call_uuid_is_refused(fake: FakePlivoRest, sleep: RecordedSleep, bad: str):
    async with client(fake, sleep) as rest:
        with pytest.raises(ValueError, match="call_uuid"):
            await rest.hangup(bad)
        with pytest.raises(ValueError, match="call_uuid"):
            await rest.transfer(bad, "https://agent.example/xml")
    assert fake.requests == []


def test_empty_auth_id_is_refused():
    with pytest.raises(ValueError, match="auth_id"):
        PlivoRest(PlivoCredentials("", TOKEN))


# -- transfer -----------------------------------------------------------------------------------


async def test_transfer_sends_plivo_fields_as_json(fake: FakePlivoRest, sleep: RecordedSleep):
    url = "https://agent.example/transfer.xml?call=1&lang=en"
    async with client(fake, sleep) as rest:
        await rest.transfer(CALL, url)

    [seen] = fake.requests
    assert (seen.method, seen.path, seen.auth, seen.status) == ("POST", CALL_PATH, "ok", 202)
    assert seen.headers["content-type"] == "application/json"
    assert seen.json == {"legs": "aleg", "aleg_url": url, "aleg_method": "POST"}
    assert [(t.call_uuid, t.legs, t.aleg_url, t.aleg_method) for t in fake.transfers] == [
        (CALL, "aleg", url, "POST")
    ]
    assert fake.live_calls == {CALL}  # a transfer does not end the call


async def test_transfer_with_get(fake: FakePlivoRest, sleep: RecordedSleep):
    async with client(fake, sleep) as rest:
        await rest.transfer(CALL, "http://agent.example/x", aleg_method="get")
    assert fake.requests[0].fields["aleg_method"] == "GET"


async def test_transfer_of_an_unknown_call_is_call_not_found(
    fake: FakePlivoRest, sleep: RecordedSleep
):
    fake.end_call(CALL)
    async with client(fake, sleep) as rest:
        with pytest.raises(PlivoRestError) as caught:
            await rest.transfer(CALL, "https://agent.example/x")
    err = caught.value
    assert (err.status, err.reason, err.attempts) == (404, "call_not_found", 1)
    assert "transfer" in str(err)
    assert CALL in str(err)
    assert len(fake.requests) == 1
    assert sleep.delays == []


async def test_transfer_retries_server_errors(fake: FakePlivoRest, sleep: RecordedSleep):
    fake.queue_statuses([502, 429])
    async with client(fake, sleep) as rest:
        await rest.transfer(CALL, "https://agent.example/x")
    assert [r.status for r in fake.requests] == [502, 429, 202]
    assert len(fake.transfers) == 1
    assert sleep.delays == [0.25, 0.5]


async def test_transfer_timeout_after_sending_is_not_retried(
    fake: FakePlivoRest, sleep: RecordedSleep
):
    fake.slow_next(1, delay_s=2.0)
    async with client(fake, sleep, timeout_s=0.1) as rest:
        with pytest.raises(PlivoRestError) as caught:
            await rest.transfer(CALL, "https://agent.example/x")
    err = caught.value
    assert (err.reason, err.status, err.attempts) == ("timeout", None, 1)
    assert "may have reached Plivo" in str(err)
    assert len(fake.requests) == 1
    assert len(fake.transfers) == 1  # Plivo did act: that is why we did not send it again
    assert sleep.delays == []


async def test_transfer_retries_refused_connections(sleep: RecordedSleep):
    rest = PlivoRest(CREDS, base_url=f"http://127.0.0.1:{free_port()}", sleep=sleep, retries=2)
    async with rest:
        with pytest.raises(PlivoRestError) as caught:
            await rest.transfer(CALL, "https://agent.example/x")
    assert (caught.value.reason, caught.value.attempts) == ("network", 2)
    assert sleep.delays == [0.25]


@pytest.mark.parametrize(
    ("url", "method"),
    [("", "POST"), ("ftp://agent.example/x", "POST"), ("https://agent.example/x", "PUT")],
)
async def test_transfer_arguments_are_checked(
    fake: FakePlivoRest, sleep: RecordedSleep, url: str, method: str
):
    async with client(fake, sleep) as rest:
        with pytest.raises(ValueError):
            await rest.transfer(CALL, url, aleg_method=method)
    assert fake.requests == []


# -- configuration ------------------------------------------------------------------------------


def test_credentials_from_env():
    env = {"PLIVO_AUTH_ID": AUTH_ID, "PLIVO_AUTH_TOKEN": TOKEN}
    assert PlivoCredentials.from_env(env) == PlivoCredentials(AUTH_ID, TOKEN)
    assert PlivoCredentials.from_env({}) is None
    assert PlivoCredentials.from_env({"PLIVO_AUTH_ID": AUTH_ID}) is None
    assert PlivoCredentials.from_env({"PLIVO_AUTH_ID": AUTH_ID, "PLIVO_AUTH_TOKEN": ""}) is None
    assert PlivoCredentials.from_env({"PLIVO_AUTH_ID": "", "PLIVO_AUTH_TOKEN": TOKEN}) is None


async def test_client_from_env(fake: FakePlivoRest, sleep: RecordedSleep):
    assert PlivoRest.from_env({}) is None
    assert PlivoRest.from_env({"PLIVO_AUTH_TOKEN": TOKEN}) is None

    default = PlivoRest.from_env({"PLIVO_AUTH_ID": AUTH_ID, "PLIVO_AUTH_TOKEN": TOKEN})
    assert default is not None
    assert default.base_url == "https://api.plivo.com"
    await default.aclose()

    env = {"PLIVO_AUTH_ID": AUTH_ID, "PLIVO_AUTH_TOKEN": TOKEN, "PLIVO_API_URL": fake.base_url}
    rest = PlivoRest.from_env(env, sleep=sleep, retries=1)
    assert rest is not None
    async with rest:
        assert await rest.hangup(CALL) == "hung_up"
    assert fake.requests[0].path == CALL_PATH


def test_repr_hides_the_token():
    for text in (repr(CREDS), str(CREDS), repr(PlivoRest(CREDS))):
        assert TOKEN not in text
        assert AUTH_ID in text
    assert "***" in repr(CREDS)


async def test_logs_carry_the_call_and_status_but_no_secret(
    fake: FakePlivoRest, sleep: RecordedSleep
):
    fake.fail_next(1, status=500)
    with capture_logs() as logs:
        async with client(fake, sleep) as rest:
            await rest.hangup(CALL)
    events = [(e["event"], e["status"]) for e in logs]
    assert events == [("plivo_rest_attempt_failed", 500), ("plivo_rest_done", 204)]
    assert all(e["call_uuid"] == CALL for e in logs)
    assert TOKEN not in repr(logs)
