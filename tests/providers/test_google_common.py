"""What the Google stages share: credentials and project resolution, error mapping, guarded
requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions as core_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import texttospeech_v1 as tts
from google.cloud.texttospeech_v1.services.text_to_speech.transports import (
    TextToSpeechGrpcAsyncIOTransport,
)

from voicebridge.clock import VirtualClock
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.resilience import BreakerRegistry, ProviderGuard, ResilienceParams
from voicebridge.runtime.stage import StageError
from voicebridge.stages import google_common
from voicebridge.stages.dialogue.dialogflow import Dialogflow, DialogflowParams
from voicebridge.stages.google_common import (
    build_client,
    close_client,
    guarded_call,
    provider_error,
    resolve_project,
)
from voicebridge.stages.stt.google_stt import GoogleStt, GoogleSttParams
from voicebridge.stages.tts.google_tts import GoogleTts, GoogleTtsParams


@pytest.fixture(autouse=True)
def _fresh_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    google_common.forget_credentials()
    yield
    google_common.forget_credentials()


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A well-formed (made-up) service-account key: ADC loads it without any network."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "key-project",
        "private_key_id": "0123",
        "private_key": pem,
        "client_email": "voicebridge@key-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path / "key.json"
    path.write_text(json.dumps(info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return path


async def test_credentials_and_project_come_from_the_key_file(key_file: Path) -> None:
    credentials, project = await google_common.default_credentials("google_stt")
    assert project == "key-project"
    assert credentials.service_account_email == (  # type: ignore[attr-defined]
        "voicebridge@key-project.iam.gserviceaccount.com"
    )
    again, _ = await google_common.default_credentials("google_tts")
    assert again is credentials  # resolved once per process
    # Preloading (service start) succeeds for every stage: the project is the key's.
    await GoogleStt.preload(GoogleSttParams())
    await GoogleTts.preload(GoogleTtsParams())
    await Dialogflow.preload(DialogflowParams(agent="a1"))


async def test_missing_credentials_fail_at_preload_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(StageError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        await GoogleTts.preload(GoogleTtsParams())


async def test_insecure_needs_no_credentials_but_a_project_for_v2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await GoogleStt.preload(GoogleSttParams(insecure=True, endpoint="127.0.0.1:1", project="p"))
    with pytest.raises(StageError, match="GOOGLE_CLOUD_PROJECT"):
        await GoogleStt.preload(GoogleSttParams(insecure=True, endpoint="127.0.0.1:1"))
    # v1 and full recognizer paths need no project.
    await GoogleStt.preload(GoogleSttParams(insecure=True, api_version="v1"))


def test_project_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_project("s", "explicit", "adc") == "explicit"
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    assert resolve_project("s", "", "adc") == "from-env"
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    assert resolve_project("s", "", "adc") == "adc"
    with pytest.raises(StageError):
        resolve_project("s", " ", None)


@pytest.mark.parametrize(
    ("exc", "kind", "status"),
    [
        (core_exceptions.Unauthenticated("bad key"), "auth", "UNAUTHENTICATED"),
        (core_exceptions.PermissionDenied("no role"), "auth", "PERMISSION_DENIED"),
        (core_exceptions.ResourceExhausted("quota"), "quota", "RESOURCE_EXHAUSTED"),
        (core_exceptions.InvalidArgument("bad voice"), "invalid", "INVALID_ARGUMENT"),
        (core_exceptions.NotFound("no agent"), "invalid", "NOT_FOUND"),
        (core_exceptions.ServiceUnavailable("down"), "unavailable", "UNAVAILABLE"),
        (core_exceptions.DeadlineExceeded("slow"), "timeout", "DEADLINE_EXCEEDED"),
        (core_exceptions.InternalServerError("oops"), "unavailable", "INTERNAL"),
        (auth_exceptions.RefreshError("token refused"), "auth", None),
        (TimeoutError(), "timeout", None),
        (ValueError("odd"), "other", None),
    ],
)
def test_error_mapping(exc: Exception, kind: str, status: str | None) -> None:
    error = provider_error("google_tts", "google-tts", exc)
    assert (error.kind, error.status) == (kind, status)
    assert str(error).startswith(f"google_tts: google-tts {kind} error")


def test_raw_grpc_errors_are_mapped_too() -> None:
    exc = grpc.aio.AioRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details="Quota exceeded for speech",
    )
    error = provider_error("google_stt", "google-speech", exc)
    assert (error.kind, error.status) == ("quota", "RESOURCE_EXHAUSTED")
    assert "Quota exceeded for speech" in str(error)


def guard(clock: VirtualClock, retry_on: frozenset[str], **resilience: Any) -> ProviderGuard:
    """A stage's guard as ``stage_guard`` makes it, with breakers of its own (on ``clock``)."""
    return ProviderGuard(
        "s",
        "p",
        "endpoint",
        ResilienceParams(**resilience),
        retry_if=lambda error: error.kind in retry_on,
        registry=BreakerRegistry(clock),
    )


async def test_requests_are_repeated_after_a_backoff_on_the_call_s_clock() -> None:
    clock = VirtualClock()
    calls: list[float] = []

    async def flaky() -> str:
        calls.append(clock.now())
        if len(calls) < 3:
            raise core_exceptions.ServiceUnavailable("blip")
        return "ok"

    g = guard(clock, frozenset({"unavailable"}), retries=2, backoff_s=1.0, backoff_max_s=1.0)
    log = structlog.get_logger("test")
    result = asyncio.ensure_future(
        guarded_call(flaky, guard=g, stage="s", provider="p", clock=clock, log=log)
    )
    await clock.settle()
    assert calls == [0.0] and not result.done()  # waiting out the backoff, on the clock
    await clock.advance(5.0)
    assert await result == "ok"
    assert len(calls) == 3 and 0.75 <= calls[1] <= 1.25  # jittered 1 s


@pytest.mark.parametrize(
    ("exc", "kind", "calls"),
    [
        (core_exceptions.InvalidArgument("no"), "invalid", 1),  # never: the request is wrong
        (core_exceptions.DeadlineExceeded("slow"), "timeout", 1),  # not what the stage allows
        (core_exceptions.ServiceUnavailable("down"), "unavailable", 3),  # bounded: 1 + 2
    ],
)
async def test_requests_are_repeated_only_as_the_stage_allows_and_boundedly(
    exc: Exception, kind: str, calls: int
) -> None:
    clock = VirtualClock()
    made: list[int] = []

    async def failing() -> str:
        made.append(1)
        raise exc

    g = guard(clock, frozenset({"unavailable"}), retries=2, backoff_s=0.1)
    result = asyncio.ensure_future(
        guarded_call(failing, guard=g, stage="google_tts", provider="p", clock=clock, log=None)
    )
    await clock.advance(5.0)
    with pytest.raises(ProviderError) as caught:
        await result
    assert caught.value.kind == kind and caught.value.stage == "google_tts"
    assert len(made) == calls


async def test_clients_build_for_google_and_for_an_emulator() -> None:
    secure = build_client(
        tts.TextToSpeechAsyncClient,
        TextToSpeechGrpcAsyncIOTransport,
        endpoint="",
        insecure=False,
        credentials=AnonymousCredentials(),
        connect=False,  # no connection attempt: tests stay on the loopback
    )
    assert secure.transport.host == "texttospeech.googleapis.com:443"
    regional = build_client(
        tts.TextToSpeechAsyncClient,
        TextToSpeechGrpcAsyncIOTransport,
        endpoint="eu-texttospeech.googleapis.com",
        insecure=False,
        credentials=AnonymousCredentials(),
        connect=False,  # no connection attempt: tests stay on the loopback
    )
    assert regional.transport.host == "eu-texttospeech.googleapis.com:443"
    with pytest.raises(StageError, match="endpoint"):
        build_client(
            tts.TextToSpeechAsyncClient,
            TextToSpeechGrpcAsyncIOTransport,
            endpoint="",
            insecure=True,
            credentials=AnonymousCredentials(),
        )
    for client in (secure, regional):
        await close_client(client)
    await close_client(None)
    await asyncio.sleep(0)
