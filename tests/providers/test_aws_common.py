"""What the AWS stages share: region resolution, credentials, clients, error mapping and
blocking requests under the stage's guard."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from voicebridge.clock import VirtualClock
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.resilience import BreakerRegistry, ProviderGuard, ResilienceParams
from voicebridge.runtime.stage import StageError
from voicebridge.runtime.workers import WorkerPoolFull
from voicebridge.stages.aws_common import (
    ClientSettings,
    clear_clients,
    frozen_credentials,
    get_client,
    is_connect_failure,
    kind_from_aws_code,
    provider_error,
    resolve_region,
    run_guarded,
    ssml_to_text,
)

pytestmark = pytest.mark.usefixtures("aws_env")


def test_region_comes_from_the_param_then_the_environment_then_the_profile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert resolve_region("eu-west-2") == "eu-west-2"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert resolve_region(None) == "eu-central-1"
    monkeypatch.delenv("AWS_REGION")
    assert resolve_region("") == "us-west-2"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    config = tmp_path / "config"
    config.write_text("[default]\nregion = ap-southeast-2\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    clear_clients()
    assert resolve_region(None) == "ap-southeast-2"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing"))
    clear_clients()
    with pytest.raises(StageError, match="AWS_REGION"):
        resolve_region(None)


def test_credentials_come_from_the_standard_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-1")
    credentials = frozen_credentials()
    assert (credentials.access_key, credentials.secret_key, credentials.token) == (
        "testing",
        "testing",
        "token-1",
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    clear_clients()
    with pytest.raises(NoCredentialsError):
        frozen_credentials()


def test_clients_are_shared_per_settings() -> None:
    settings = ClientSettings("polly", "us-east-1", "http://127.0.0.1:9")
    first = get_client(settings)
    assert get_client(ClientSettings("polly", "us-east-1", "http://127.0.0.1:9")) is first
    assert get_client(ClientSettings("polly", "us-east-1", "http://127.0.0.1:10")) is not first
    assert first.meta.config.retries["total_max_attempts"] == 1  # we retry, not botocore
    assert first.meta.config.read_timeout == 10.0


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("AccessDeniedException", 403, "auth"),
        ("UnrecognizedClientException", 400, "auth"),
        ("ExpiredTokenException", 400, "auth"),
        ("ThrottlingException", 400, "quota"),
        ("LimitExceededException", 400, "quota"),
        ("ValidationException", 400, "invalid"),
        ("BadRequestException", 400, "invalid"),
        ("InternalFailure", 500, "unavailable"),
        ("ServiceUnavailable", 503, "unavailable"),
        ("RequestTimeoutException", 408, "timeout"),
        ("SomethingNew", 429, "quota"),  # unknown codes fall back to the status
        ("SomethingNew", 502, "unavailable"),
        (None, None, "other"),
    ],
)
def test_error_codes_map_to_kinds(code: str | None, status: int | None, kind: str) -> None:
    assert kind_from_aws_code(code, status) == kind


def test_client_errors_keep_code_message_and_status() -> None:
    exc = ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 429},
        },
        "SynthesizeSpeech",
    )
    error = provider_error("polly", "Amazon Polly", exc)
    assert (error.kind, error.status) == ("quota", 429)
    assert (
        str(error)
        == "polly: Amazon Polly quota error (status 429): ThrottlingException: Rate exceeded"
    )


@pytest.mark.parametrize(
    ("exc", "kind", "connect_failure"),
    [
        (ReadTimeoutError(endpoint_url="http://x"), "timeout", False),
        (ConnectTimeoutError(endpoint_url="http://x"), "timeout", True),
        (EndpointConnectionError(endpoint_url="http://x"), "unavailable", True),
        (NoCredentialsError(), "auth", False),
        (NoRegionError(), "invalid", False),
        (WorkerPoolFull("polly", 1, 1), "unavailable", False),
        (RuntimeError("boom"), "other", False),
    ],
)
def test_other_failures_map_to_kinds(exc: Exception, kind: str, connect_failure: bool) -> None:
    error = provider_error("lex", "Amazon Lex", exc)
    assert error.kind == kind and type(exc).__name__ in str(error)
    assert is_connect_failure(exc) is connect_failure


def test_ssml_to_text() -> None:
    assert ssml_to_text("<speak>Hi <break time='1s'/>there &amp; <b>bye</b>!</speak>") == (
        "Hi there & bye!"
    )


def lex_guard(clock: VirtualClock) -> ProviderGuard:
    """Lex's guard: it repeats only what cannot have reached the bot (a failed connection)."""
    return ProviderGuard(
        "lex",
        "Amazon Lex",
        "endpoint",
        ResilienceParams(retries=2, backoff_s=1.0, backoff_max_s=1.0),
        retry_if=lambda error: is_connect_failure(error.__cause__ or error),
        registry=BreakerRegistry(clock),
    )


async def backing_off(clock: VirtualClock) -> None:
    """Wait (real time: the request runs in a worker thread) until the guard sleeps its backoff."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while not clock.sleeping:
        assert loop.time() < deadline, "the guard never backed off"
        await asyncio.sleep(0.001)


async def test_blocking_requests_are_repeated_after_a_backoff_on_the_call_s_clock() -> None:
    clock = VirtualClock()
    calls: list[float] = []

    def connect_fails_twice(value: int) -> int:
        calls.append(clock.now())
        if len(calls) < 3:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
        return 2 * value

    result = asyncio.ensure_future(
        run_guarded(
            "test-aws-guarded",
            connect_fails_twice,
            21,
            guard=lex_guard(clock),
            stage="lex",
            provider="Amazon Lex",
            workers=1,
            clock=clock,
        )
    )
    for tried in (1, 2):
        await backing_off(clock)
        assert len(calls) == tried  # not repeated before the clock says so
        await clock.advance(1.25)
    assert await result == 42
    assert 0.75 <= calls[1] <= 1.25 and 1.5 <= calls[2] <= 2.5


async def test_a_blocking_request_that_reached_aws_is_not_repeated() -> None:
    clock = VirtualClock()
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise ClientError(
            {
                "Error": {"Code": "ValidationException", "Message": "bad bot"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            "RecognizeText",
        )

    with pytest.raises(ProviderError) as caught:
        await run_guarded(
            "test-aws-guarded",
            refused,
            guard=lex_guard(clock),
            stage="lex",
            provider="Amazon Lex",
            workers=1,
            clock=clock,
        )
    assert len(calls) == 1
    assert (caught.value.kind, caught.value.stage) == ("invalid", "lex")
    assert isinstance(caught.value.__cause__, ClientError)  # what the stage's retry_if reads
