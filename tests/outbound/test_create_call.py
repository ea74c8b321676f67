"""Placing a call: PlivoRest.create_call against FakePlivoRest over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from voicebridge.telephony.call_request import CallRequest, MachineDetection
from voicebridge.telephony.numbers import InvalidNumber, e164, plivo_number
from voicebridge.telephony.plivo_rest import PlivoCredentials, PlivoRest, PlivoRestError
from voicebridge.testing.plivo_rest_fake import FakePlivoRest

AUTH_ID = "MAFAKEACCOUNT0000001"
TOKEN = "s3cr3t-t0ken-value"
CREDS = PlivoCredentials(AUTH_ID, TOKEN)
ANSWER = "https://agent.example/answer?t=abc"


class RecordedSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def fake() -> AsyncIterator[FakePlivoRest]:
    async with FakePlivoRest(AUTH_ID, TOKEN) as server:
        yield server


def request(**overrides: object) -> CallRequest:
    fields: dict[str, object] = {"to": "+15551234567", "from_": "+14155550100"}
    fields.update(answer_url=ANSWER)
    fields.update(overrides)
    return CallRequest(**fields)  # type: ignore[arg-type]


async def test_create_call_posts_plivos_fields_with_basic_auth(fake: FakePlivoRest):
    sleep = RecordedSleep()
    call = request(
        hangup_url="https://agent.example/hangup",
        machine_detection=MachineDetection(url="https://agent.example/machine"),
    )
    async with PlivoRest(CREDS, base_url=fake.base_url, sleep=sleep) as rest:
        created = await rest.create_call(call)

    [seen] = fake.requests
    assert (seen.method, seen.path, seen.auth, seen.status) == (
        "POST",
        f"/v1/Account/{AUTH_ID}/Call/",
        "ok",
        201,
    )
    assert seen.headers["content-type"] == "application/json"
    assert seen.json == {
        "from": "14155550100",
        "to": "15551234567",
        "answer_url": ANSWER,
        "answer_method": "POST",
        "hangup_url": "https://agent.example/hangup",
        "hangup_method": "POST",
        "machine_detection": "true",
        "machine_detection_time": "5000",
        "machine_detection_maximum_speech_length": "5000",
        "machine_detection_initial_silence": "4500",
        "machine_detection_url": "https://agent.example/machine",
        "machine_detection_method": "POST",
    }
    [placed] = fake.created_calls
    assert created.request_uuid == placed.request_uuid
    assert created.message == "call fired"
    assert sleep.delays == []


async def test_a_wrong_token_is_refused_and_never_echoed(fake: FakePlivoRest):
    async with PlivoRest(PlivoCredentials(AUTH_ID, "wrong"), base_url=fake.base_url) as rest:
        with pytest.raises(PlivoRestError) as caught:
            await rest.create_call(request())
    assert caught.value.reason == "unauthorized"
    assert fake.requests[0].auth == "bad"
    assert fake.created_calls == []
    assert "wrong" not in str(caught.value)  # the token never reaches the message


async def test_create_call_retries_5xx_then_succeeds(fake: FakePlivoRest):
    sleep = RecordedSleep()
    fake.queue_statuses([502, 503])
    async with PlivoRest(CREDS, base_url=fake.base_url, sleep=sleep, backoff_s=0.5) as rest:
        await rest.create_call(request())
    assert [r.status for r in fake.requests] == [502, 503, 201]
    assert sleep.delays == [0.5, 1.0]
    assert len(fake.created_calls) == 1


async def test_create_call_honours_a_long_retry_after_on_429(fake: FakePlivoRest):
    sleep = RecordedSleep()
    fake.fail_next(1, status=429, retry_after=20)
    async with PlivoRest(CREDS, base_url=fake.base_url, sleep=sleep, backoff_s=0.25) as rest:
        await rest.create_call(request())
    assert [r.status for r in fake.requests] == [429, 201]
    assert sleep.delays == [20.0]  # a mid-call hang-up would not wait this long; placing a call may


async def test_create_call_gives_up_after_the_attempts(fake: FakePlivoRest):
    sleep = RecordedSleep()
    fake.fail_next(5, status=500)
    async with PlivoRest(CREDS, base_url=fake.base_url, sleep=sleep, retries=3) as rest:
        with pytest.raises(PlivoRestError) as caught:
            await rest.create_call(request())
    assert (caught.value.reason, caught.value.status, caught.value.attempts) == (
        "server_error",
        500,
        3,
    )
    assert "+15551234567" in str(caught.value)
    assert fake.created_calls == []


async def test_a_400_is_not_retried(fake: FakePlivoRest):
    sleep = RecordedSleep()
    fake.queue_statuses([400])
    async with PlivoRest(CREDS, base_url=fake.base_url, sleep=sleep) as rest:
        with pytest.raises(PlivoRestError) as caught:
            await rest.create_call(request())
    assert caught.value.reason == "bad_request"
    assert len(fake.requests) == 1
    assert sleep.delays == []


@pytest.mark.parametrize(
    "text",
    ["5551234567", "+0551234567", "+1555", "+1555123456789012", "+1 555 CALL", "", "0015551234"],
)
def test_bad_numbers_are_refused_before_any_request(text: str):
    with pytest.raises(InvalidNumber) as caught:
        e164(text)
    assert "E.164" in str(caught.value)
    with pytest.raises(InvalidNumber):
        request(to=text)


def test_separators_are_tolerated_and_plivo_gets_digits():
    assert e164(" +1 (555) 123-4567 ") == "+15551234567"
    assert plivo_number("+44 20 7946 0958") == "442079460958"


def test_machine_detection_ranges_are_plivos():
    with pytest.raises(ValueError, match="2000 to 10000"):
        MachineDetection(time_ms=1000)
    with pytest.raises(ValueError, match="1000 to 6000"):
        MachineDetection(maximum_speech_length_ms=7000)
    with pytest.raises(ValueError, match="true or hangup"):
        MachineDetection(mode="yes")  # type: ignore[arg-type]
    assert MachineDetection(mode="hangup").fields()["machine_detection"] == "hangup"


def test_urls_must_be_http():
    with pytest.raises(ValueError, match="answer_url"):
        request(answer_url="ftp://x")
    with pytest.raises(ValueError, match="answer_url is required"):
        request(answer_url="")
