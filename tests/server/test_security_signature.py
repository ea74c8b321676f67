"""Plivo's V3 signature on /answer, /status and /transfer, through the running service."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from voicebridge.config import ConfigError
from voicebridge.server.security import SecurityConfig

from .conftest import (
    AUTH_TOKEN,
    ENV,
    MAIN_TOKEN,
    SECRETS,
    plivo_request,
    secured_service,
    settings,
)

CALL = {"CallUUID": "0b6a3c2e-1111-4c4c-8888-123456789abc", "From": "14155550100"}


def no_secret_in(entries: list[dict[str, Any]], *extra: str) -> None:
    text = repr(entries)
    for secret in (*SECRETS, *extra):
        assert secret not in text


def refusals(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["event"] == "request_refused"]


async def test_signed_post_and_get_are_answered() -> None:
    async with secured_service() as service:
        posted = await plivo_request(service, "/answer", CALL)
        assert posted.status_code == 200 and "<Stream" in posted.text
        got = await plivo_request(service, "/answer", CALL, method="GET")
        assert got.status_code == 200 and "<Stream" in got.text
        # A query string in the configured answer URL is part of what Plivo signs.
        with_query = await plivo_request(service, "/answer?tenant=acme&lang=en", CALL)
        assert with_query.status_code == 200
        status = await plivo_request(service, "/status", {"Event": "StartStream", **CALL})
        assert status.status_code == 200
        transfer = await plivo_request(service, "/transfer?to=%2B14155550123", CALL)
        assert transfer.status_code == 200 and "<Number>+14155550123</Number>" in transfer.text


@pytest.mark.parametrize("path", ["/answer", "/status", "/transfer?to=%2B14155550123"])
async def test_unsigned_requests_get_403_and_a_log_line(path: str) -> None:
    async with secured_service() as service:
        with capture_logs() as entries:
            response = await plivo_request(service, path, CALL, token=None)
        assert response.status_code == 403
        assert response.text == "forbidden: missing signature"
        (refused,) = refusals(entries)
        assert refused["reason"] == "missing_signature"
        assert refused["path"] == path.split("?")[0] and refused["log_level"] == "warning"
        no_secret_in(entries)


async def test_wrong_token_tampered_params_and_wrong_url_are_refused() -> None:
    async with secured_service() as service:
        with capture_logs() as entries:
            wrong = await plivo_request(service, "/answer", CALL, token="someone-elses-token-000")
            assert wrong.status_code == 403 and wrong.text == "forbidden: bad signature"
            # Signed for one call, sent for another.
            signed = await plivo_request(
                service, "/status", {**CALL, "Event": "StartStream"}, signed_as=None
            )
            assert signed.status_code == 200
            headers = {
                "X-Plivo-Signature-V3": "bm90LWEtcmVhbC1zaWduYXR1cmU=",
                "X-Plivo-Signature-V3-Nonce": "12345",
            }
            forged = await plivo_request(service, "/status", CALL, token=None, headers=headers)
            assert forged.status_code == 403
            elsewhere = await plivo_request(
                service, "/answer", CALL, signed_as="https://attacker.example/answer"
            )
            assert elsewhere.status_code == 403
        reasons = [e["reason"] for e in refusals(entries)]
        assert reasons == ["bad_signature", "bad_signature", "bad_signature"]
        assert service.app.state.signature_guard.refusals == {"bad_signature": 3}
        no_secret_in(entries, "bm90LWEtcmVhbC1zaWduYXR1cmU=")


async def test_a_signature_over_other_params_is_refused() -> None:
    """The signature covers every POST parameter: changing one after signing breaks it."""
    from voicebridge.sim.answer import plivo_headers

    async with secured_service() as service:
        import httpx

        url = f"{service.http_base}/answer"
        headers = plivo_headers("POST", url, CALL, AUTH_TOKEN)
        async with httpx.AsyncClient() as client:
            ok = await client.post(url, data=CALL, headers=headers)
            changed = await client.post(url, data={**CALL, "From": "10000000000"}, headers=headers)
        assert ok.status_code == 200
        assert changed.status_code == 403


async def test_main_account_signature() -> None:
    async with secured_service() as service:
        ma = await plivo_request(
            service, "/answer", CALL, token=MAIN_TOKEN, header="X-Plivo-Signature-Ma-V3"
        )
        assert ma.status_code == 200
        unknown = await plivo_request(
            service, "/answer", CALL, token="not-our-main-token", header="X-Plivo-Signature-Ma-V3"
        )
        assert unknown.status_code == 403
    # Without a main token configured, only the account's own token signs.
    env = {"PLIVO_AUTH_TOKEN": AUTH_TOKEN}
    async with secured_service(env) as service:
        ma = await plivo_request(
            service, "/answer", CALL, token=MAIN_TOKEN, header="X-Plivo-Signature-Ma-V3"
        )
        assert ma.status_code == 403


async def test_behind_tls_termination_the_public_url_is_what_plivo_signed() -> None:
    public = "https://agent.example.com"
    async with secured_service(public_url=public) as service:
        ok = await plivo_request(service, "/answer", CALL, signed_as=f"{public}/answer")
        assert ok.status_code == 200
        assert ">wss://agent.example.com/stream?token=" in ok.text
        with capture_logs() as entries:
            local = await plivo_request(service, "/answer", CALL)  # signed over 127.0.0.1
        assert local.status_code == 403
        assert refusals(entries)[0]["signed_url"] == f"{public}/answer"


async def test_forwarded_headers_without_public_url() -> None:
    proxy = {"x-forwarded-proto": "https", "x-forwarded-host": "agent.example"}
    async with secured_service() as service:
        ok = await plivo_request(
            service, "/answer", CALL, signed_as="https://agent.example/answer", headers=proxy
        )
        assert ok.status_code == 200


async def test_health_is_never_signed() -> None:
    import httpx

    async with secured_service() as service, httpx.AsyncClient() as client:
        assert (await client.get(f"{service.http_base}/health")).status_code == 200


async def test_off_and_auto_without_token_accept_unsigned_requests() -> None:
    async with secured_service({}) as service:
        response = await plivo_request(service, "/answer", CALL, token=None)
        assert response.status_code == 200
    off = {"security": {"verify_signatures": "off"}}
    async with secured_service(ENV, **off) as service:
        response = await plivo_request(service, "/answer", CALL, token=None)
        assert response.status_code == 200


def test_on_without_a_token_is_a_startup_error() -> None:
    strict = settings(security={"verify_signatures": "on"})
    with pytest.raises(ConfigError, match="PLIVO_AUTH_TOKEN is not set"):
        SecurityConfig.from_env(
            strict, {"VOICEBRIDGE_STREAM_SECRET": ENV["VOICEBRIDGE_STREAM_SECRET"]}
        )
    config = SecurityConfig.from_env(strict, ENV)
    assert config.verify_signatures and config.stream_tokens
    for secret in SECRETS:
        assert secret not in repr(config)


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_an_open_service_on_a_public_interface_is_warned_about(host: str, warned: bool) -> None:
    tokens_only = {"VOICEBRIDGE_STREAM_SECRET": ENV["VOICEBRIDGE_STREAM_SECRET"]}
    with capture_logs() as entries:
        SecurityConfig.from_env(settings(host=host), {})
        SecurityConfig.from_env(settings(host=host), tokens_only)  # /answer still mints for all
        SecurityConfig.from_env(settings(host=host), ENV)  # protected: no warning
    assert [e["event"] for e in entries] == (["security_off"] * 2 if warned else [])


async def test_oversized_or_non_form_bodies_are_refused_unread() -> None:
    import httpx

    async with secured_service() as service, httpx.AsyncClient() as client:
        headers = {"X-Plivo-Signature-V3": "c2ln", "X-Plivo-Signature-V3-Nonce": "1"}
        url = f"{service.http_base}/answer"
        big = await client.post(url, content=b"a=" + b"x" * 70_000, headers=headers)
        as_json = await client.post(url, json={"CallUUID": "x"}, headers=headers)
        assert big.status_code == as_json.status_code == 403
        assert big.text == as_json.text == "forbidden: unreadable body"


def test_serve_refuses_to_start_when_on_without_its_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from voicebridge.cli import main

    from .conftest import ROOT

    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VOICEBRIDGE_VERIFY_SIGNATURES", "on")
    monkeypatch.setenv("VOICEBRIDGE_STREAM_TOKEN_MODE", "on")
    monkeypatch.setenv("VOICEBRIDGE_STREAM_SECRET", "too-short")
    code = main(["serve", str(ROOT / "pipelines" / "echo.yaml"), "--port", "0"])
    err = capsys.readouterr().err
    assert code == 3  # an invalid configuration
    assert "security.verify_signatures: is 'on' but PLIVO_AUTH_TOKEN is not set" in err
    assert "VOICEBRIDGE_STREAM_SECRET must hold at least 16 bytes" in err
    assert "too-short" not in err
