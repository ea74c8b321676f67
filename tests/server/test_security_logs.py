"""No secret reaches the logs: structlog events and uvicorn's own lines are masked."""

from __future__ import annotations

import json
import logging

import pytest
import structlog
from websockets.asyncio.client import connect

from voicebridge.observe.logs import (
    RedactingFilter,
    Redactor,
    configure_logging,
    environment_secrets,
)
from voicebridge.sim.answer import answer_call

from .conftest import ENV, SECRETS, STREAM_SECRET, secured_service


def test_secret_named_fields_are_masked_and_counts_are_not() -> None:
    redact = Redactor()
    event = redact(
        None,
        "info",
        {
            "event": "x",
            "auth_token": "abc",
            "stream_token": "t",
            "X-Plivo-Signature-V3": "sig",
            "authorization": "Basic Zm9vOmJhcg==",
            "api_key": "k",
            "max_tokens": 256,
            "api_key_env": "OPENAI_API_KEY",
            "stream_token_ttl_s": 60,
            "headers": {"Authorization": "Bearer xyz", "tenant": "acme"},
        },
    )
    assert event["auth_token"] == event["stream_token"] == "***"
    assert event["X-Plivo-Signature-V3"] == event["authorization"] == event["api_key"] == "***"
    assert event["max_tokens"] == 256 and event["stream_token_ttl_s"] == 60
    assert event["api_key_env"] == "OPENAI_API_KEY"
    assert event["headers"] == {"Authorization": "***", "tenant": "acme"}


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("wss://a.example/stream?token=abc.def", "wss://a.example/stream?token=***"),
        ("/stream?x=1&token=abc.def&y=2", "/stream?x=1&token=***&y=2"),
        ("GET /answer?auth_token=zzz HTTP/1.1", "GET /answer?auth_token=*** HTTP/1.1"),
        ("Authorization: Bearer abcdefghijkl", "Authorization: Bearer ***"),
        ("tokens=5 and max_tokens", "tokens=5 and max_tokens"),
        (
            "https://speech.example/v1?key=AIzaSyA0123&alt=json",
            "https://speech.example/v1?key=***&alt=json",
        ),
    ],
)
def test_tokens_in_urls_and_messages_are_masked(text: str, masked: str) -> None:
    assert Redactor().text(text) == masked


def test_known_secret_values_are_masked_anywhere() -> None:
    environ = {
        **ENV,
        "OPENAI_API_KEY": "sk-test-1234567890",
        "AWS_SECRET_ACCESS_KEY": "aws/secret/0123456789",
        "AWS_ACCESS_KEY_ID": "AKIA0123456789",
        "GOOGLE_APPLICATION_CREDENTIALS": "/etc/creds.json",
        "HOME": "/root",
        "SHORT_TOKEN": "abc",
    }
    secrets = environment_secrets(environ)
    assert set(secrets) == {*SECRETS, "sk-test-1234567890", "aws/secret/0123456789"}
    redact = Redactor(secrets)
    event = redact(None, "error", {"event": "failed", "error": f"401 for key {STREAM_SECRET}!"})
    assert event["error"] == "401 for key ***!"


def test_stdlib_records_are_masked() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/stream?token=abc.def"), None,
    )  # fmt: skip
    assert RedactingFilter(Redactor()).filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "WebSocket /stream?token=***" [accepted]'


async def test_service_logs_carry_no_secret(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The real logging set-up, a real service, a real token in a real WebSocket URL."""
    caplog.set_level(logging.INFO)
    configure_logging("json", "info", environ=ENV)
    try:
        async with secured_service() as service:
            answered = await answer_call(
                f"{service.http_base}/answer", call_uuid="call-1", environ=ENV
            )
            async with connect(answered.url) as ws:
                await ws.close()
            log = structlog.get_logger("test")
            log.error("provider_failed", error=f"bad key {ENV['PLIVO_AUTH_TOKEN']}")
            log.info("request", url=answered.url, stream_secret=STREAM_SECRET)
    finally:
        logging.getLogger().setLevel(logging.WARNING)
    token = answered.url.split("token=")[1]
    structured = capsys.readouterr().err
    stdlib = caplog.text
    assert '"event": "provider_failed"' in structured and "WebSocket /stream?token=***" in stdlib
    for text in (structured, stdlib):
        for secret in (*SECRETS, token):
            assert secret not in text
    lines = [json.loads(line) for line in structured.splitlines() if line.startswith("{")]
    request = next(line for line in lines if line["event"] == "request")
    assert request["url"].endswith("/stream?token=***") and request["stream_secret"] == "***"
