"""What the AWS stages share: region resolution, credentials, clients and error mapping."""

from __future__ import annotations

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
