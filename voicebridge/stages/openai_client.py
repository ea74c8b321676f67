"""What every OpenAI-family stage shares: connection params, the API key, one SDK client per
endpoint, the resilience guard and the mapping of SDK errors to ``ProviderError``.

It lives beside the roles, not in one of them: the ``llm`` dialogue and the ``openai_tts``
speaker both reach OpenAI (or a compatible server) the same way, and neither owns the other.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai
from pydantic import Field, field_validator

from voicebridge.runtime.providers import (
    ErrorKind,
    ProviderError,
    kind_from_http_status,
    retry_after_from_headers,
)
from voicebridge.runtime.resilience import ProviderGuard, ResilienceParams
from voicebridge.runtime.stage import StageError, StageParams
from voicebridge.runtime.workers import run_blocking

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_POOL_NAME = "openai-clients"  # building a client loads CA certificates: not on the event loop
_LOCAL_KEY = "not-needed"  # most self-hosted servers ignore the key, but the SDK wants one


class OpenAIClientParams(StageParams):
    """Connection settings every OpenAI-family stage has."""

    base_url: str | None = Field(
        None,
        description="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
        "(empty or None = OpenAI, or the OPENAI_BASE_URL environment variable)",
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="environment variable that holds the API key"
    )
    timeout_s: float = Field(
        10.0, gt=0, le=600, description="wait at most this long for an answer or the next chunk"
    )
    connect_timeout_s: float = Field(3.0, gt=0, le=60, description="TCP + TLS connect timeout")
    max_retries: int = Field(
        0,
        ge=0,
        le=5,
        description="the SDK's own retries (real time, off the call's clock); "
        "prefer resilience.retries",
    )
    resilience: ResilienceParams = Field(
        default_factory=lambda: ResilienceParams(),
        description="retries, first-byte deadline and circuit breaker (docs/resilience.md)",
    )

    @field_validator("base_url")
    @classmethod
    def _empty_is_default(cls, value: str | None) -> str | None:
        # `${OPENAI_BASE_URL:-}` in YAML gives "" when unset: that means the default endpoint.
        value = (value or "").strip()
        return value or None

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError("api_key_env is the NAME of an environment variable, not a key")
        return value


def provider_name(base_url: str | None) -> str:
    """The provider as named in errors and logs: "openai", or the host of a compatible endpoint."""
    if base_url is None:
        return "openai"
    host = urlsplit(base_url).netloc or base_url
    return f"openai-compatible ({host})"


def api_key(stage: str, params: OpenAIClientParams) -> str:
    """The API key from the environment; raises StageError if OpenAI itself needs one."""
    key = os.environ.get(params.api_key_env, "").strip()
    if key:
        return key
    if params.base_url is None and not os.environ.get("OPENAI_BASE_URL"):
        raise StageError(
            f"{stage}: no API key: set the environment variable {params.api_key_env} "
            "(or point base_url at a server that needs none)"
        )
    return _LOCAL_KEY


def make_client(key: str, params: OpenAIClientParams) -> openai.AsyncOpenAI:
    """An SDK client with our timeouts and retry budget (blocking: it loads CA certificates)."""
    return openai.AsyncOpenAI(
        api_key=key,
        base_url=params.base_url,
        timeout=openai.Timeout(params.timeout_s, connect=params.connect_timeout_s),
        max_retries=params.max_retries,
    )


@dataclass
class _SharedClient:
    ready: asyncio.Future[openai.AsyncOpenAI]
    users: int = 0


_ClientKey = tuple[Any, ...]
_clients: dict[_ClientKey, _SharedClient] = {}


class ClientLease:
    """The calls of one event loop share an SDK client per endpoint, key and settings.

    Sharing keeps connections warm (a call's first request skips the TCP and TLS handshakes
    while other calls are running) and building a client (~30 ms of certificate loading) happens
    off the event loop, once. The client is closed when its last call ends, so nothing outlives
    the calls that use it.
    """

    def __init__(self, params: OpenAIClientParams) -> None:
        self._params = params
        self._key: _ClientKey | None = None

    async def acquire(self, stage: str) -> openai.AsyncOpenAI:
        """The shared client; ``stage`` names the stage in a missing-key error."""
        params = self._params
        loop = asyncio.get_running_loop()
        key_text = api_key(stage, params)
        key: _ClientKey = (
            loop,
            params.base_url,
            key_text,
            params.timeout_s,
            params.connect_timeout_s,
            params.max_retries,
        )
        shared = _clients.get(key)
        if shared is None:
            ready = asyncio.ensure_future(run_blocking(_POOL_NAME, make_client, key_text, params))
            shared = _clients[key] = _SharedClient(ready)
        shared.users += 1
        self._key = key
        try:
            return await asyncio.shield(shared.ready)
        except BaseException:
            await self.release()
            raise

    async def release(self) -> None:
        key, self._key = self._key, None
        if key is None:
            return
        shared = _clients.get(key)
        if shared is None:
            return
        shared.users -= 1
        if shared.users > 0:
            return
        del _clients[key]
        if not shared.ready.done():
            shared.ready.cancel()
            return
        if not shared.ready.cancelled() and shared.ready.exception() is None:
            await shared.ready.result().close()


def _body_message(body: object, fallback: str) -> str:
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    return fallback


def openai_guard(
    stage: str, provider: str, params: OpenAIClientParams, model: str
) -> ProviderGuard:
    """The guard of an OpenAI-family stage: one breaker per endpoint and model."""
    endpoint = f"{params.base_url or 'https://api.openai.com/v1'} {model}"
    return ProviderGuard(stage, provider, endpoint, params.resilience)


def provider_error(stage: str, provider: str, exc: BaseException) -> ProviderError:
    """Whatever the SDK (or its HTTP layer, mid-stream) raised, as one ProviderError."""
    kind: ErrorKind
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            kind = "auth"
        elif isinstance(exc, openai.RateLimitError):
            kind = "quota"
        elif isinstance(
            exc, openai.BadRequestError | openai.NotFoundError | openai.UnprocessableEntityError
        ):
            kind = "invalid"
        elif isinstance(exc, openai.InternalServerError):
            kind = "unavailable"
        else:
            kind = kind_from_http_status(status)
        return ProviderError(
            stage,
            provider,
            kind,
            _body_message(exc.body, exc.message),
            status=status,
            retry_after_s=retry_after_from_headers(exc.response.headers),
        )
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return ProviderError(stage, provider, "timeout", f"request timed out ({exc!r})")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        detail = f"{exc.message} ({cause!r})" if cause is not None else exc.message
        return ProviderError(stage, provider, "unavailable", detail)
    if isinstance(exc, httpx2.TransportError):
        return ProviderError(stage, provider, "unavailable", f"connection failed: {exc!r}")
    if isinstance(exc, openai.APIError):  # an error event inside a stream
        kind = "unavailable" if exc.type in ("server_error", "overloaded_error") else "other"
        return ProviderError(stage, provider, kind, _body_message(exc.body, exc.message))
    return ProviderError(stage, provider, "other", f"{type(exc).__name__}: {exc}")
