"""What the Google Cloud stages share: clients, credentials, project, error mapping, and
requests under the stage's provider guard.

Credentials come from Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, the
``gcloud auth application-default login`` file, or the metadata server on Google Cloud), never
from YAML. Resolving them can block (a file read, a metadata-server round trip), so it runs once
per process in a thread and is cached; every call's client reuses the same credentials object,
which refreshes its own token off the event loop (gRPC runs auth plugins in its own threads).

Each call opens its own ``grpc.aio`` channel (an HTTP/2 connection) per service and closes it
at call end: channels belong to one event loop, and one connection per call keeps a slow or
broken stream of one call from ever touching another call. The connection is started as soon
as the client is made, so the first request does not pay for the TLS handshake.

``endpoint`` overrides the service address (a regional endpoint, an emulator, a test fake);
``insecure: true`` makes that a plaintext channel with anonymous credentials, which only
emulators and test fakes accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import google.auth
import grpc
from google.api_core import exceptions as core_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from pydantic import Field

from voicebridge.clock import Clock
from voicebridge.runtime.providers import (
    ErrorKind,
    ProviderError,
    kind_from_grpc_code,
    kind_from_http_status,
)
from voicebridge.runtime.resilience import Attempt, ProviderGuard
from voicebridge.runtime.stage import StageError, StageParams

T = TypeVar("T")

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
PROJECT_ENV = "GOOGLE_CLOUD_PROJECT"


class GoogleParams(StageParams):
    """Parameters every Google stage has: where the service is, and which project pays."""

    project: str = Field(
        "",
        description=f"Google Cloud project id; empty = ${PROJECT_ENV}, then the credentials' "
        "own project",
    )
    endpoint: str = Field(
        "", description="service address host:port; empty = Google's (regional when needed)"
    )
    insecure: bool = Field(
        False,
        description="plaintext gRPC with anonymous credentials to `endpoint` (emulators, tests)",
    )


# --- credentials and project ----------------------------------------------------------------

_adc: tuple[Credentials, str | None] | None = None
_adc_lock = threading.Lock()


def _load_adc() -> tuple[Credentials, str | None]:
    global _adc
    with _adc_lock:
        if _adc is None:
            credentials, project = google.auth.default(scopes=list(SCOPES))
            _adc = (credentials, project)
        return _adc


async def default_credentials(stage: str) -> tuple[Credentials, str | None]:
    """Application Default Credentials and their project, resolved once per process."""
    if _adc is not None:
        return _adc
    try:
        return await asyncio.to_thread(_load_adc)
    except auth_exceptions.DefaultCredentialsError as exc:
        raise StageError(
            f"{stage}: no Google credentials found ({exc}); set GOOGLE_APPLICATION_CREDENTIALS "
            "to a service-account key file, or run `gcloud auth application-default login`"
        ) from exc


def forget_credentials() -> None:
    """Drop the cached credentials (tests; a rotated key file)."""
    global _adc
    with _adc_lock:
        _adc = None


def resolve_project(stage: str, configured: str, adc_project: str | None = None) -> str:
    """The project: the stage's ``project``, else $GOOGLE_CLOUD_PROJECT, else the ADC one."""
    project = configured.strip() or os.environ.get(PROJECT_ENV, "").strip() or adc_project or ""
    if not project:
        raise StageError(
            f"{stage}: no Google Cloud project: set the stage's `project` parameter or "
            f"${PROJECT_ENV}"
        )
    return project


async def client_credentials(stage: str, params: GoogleParams) -> tuple[Credentials, str | None]:
    """Credentials for a call's client (anonymous for ``insecure``) and the ADC project."""
    if params.insecure:
        return AnonymousCredentials(), None
    return await default_credentials(stage)


# --- clients --------------------------------------------------------------------------------


def build_client(
    client_cls: Callable[..., T],
    transport_cls: Callable[..., Any],
    *,
    endpoint: str,
    insecure: bool,
    credentials: Credentials,
    connect: bool = True,
) -> T:
    """An async GAPIC client for one call, on its own channel, already connecting."""
    if insecure:
        if not endpoint:
            raise StageError("insecure: true needs an `endpoint` (host:port of an emulator)")

        def transport(**kwargs: Any) -> Any:
            host = kwargs["host"]
            channel = grpc.aio.insecure_channel(host)
            return transport_cls(host=host, channel=channel, client_info=kwargs["client_info"])

        client = client_cls(
            credentials=AnonymousCredentials(),
            transport=transport,
            client_options={"api_endpoint": endpoint},
        )
    else:
        options = {"api_endpoint": endpoint} if endpoint else None
        client = client_cls(credentials=credentials, client_options=options)
    if connect:
        warm_up(client)
    return client


def warm_up(client: Any) -> None:
    """Start connecting now (non-blocking), so the first request finds the channel ready."""
    with contextlib.suppress(Exception):  # best effort: the first request connects anyway
        client.transport.grpc_channel.get_state(try_to_connect=True)


async def close_client(client: Any) -> None:
    """Close a client's channel; in-flight RPCs on it are cancelled."""
    if client is None:
        return
    with contextlib.suppress(Exception):  # closing twice, or a channel that never opened
        await client.transport.close()


# --- errors ---------------------------------------------------------------------------------


def provider_error(stage: str, provider: str, exc: BaseException) -> ProviderError:
    """Turn whatever the SDK, gRPC or google-auth raised into one ``ProviderError``."""
    if isinstance(exc, ProviderError):
        return exc
    kind: ErrorKind = "other"
    status: int | str | None = None
    message = str(exc) or type(exc).__name__
    if isinstance(exc, core_exceptions.GoogleAPICallError):
        code = exc.grpc_status_code
        if code is not None:
            status = code.name
            kind = kind_from_grpc_code(code.name)
        elif isinstance(exc.code, int):
            status = exc.code
            kind = kind_from_http_status(exc.code)
        message = exc.message or message
    elif isinstance(exc, grpc.aio.AioRpcError):
        code_name = str(exc.code().name)
        status = code_name
        kind = kind_from_grpc_code(code_name)
        message = exc.details() or message
    elif isinstance(exc, auth_exceptions.GoogleAuthError):
        kind = "auth"
    elif isinstance(exc, TimeoutError):
        kind = "timeout"
        message = "no answer in time"
    return ProviderError(stage, provider, kind, message, status=status)


async def guarded_call(
    call: Callable[[], Awaitable[T]],
    *,
    guard: ProviderGuard,
    stage: str,
    provider: str,
    clock: Clock,
    log: Any,
) -> T:
    """Run the request ``call`` under the stage's ``guard`` (see
    :mod:`voicebridge.runtime.resilience`): its retry policy, first-byte deadline and circuit
    breaker, on ``clock`` (the call's). Whatever the SDK, gRPC or google-auth raised becomes a
    ``ProviderError`` of ``stage`` (its current name) the guard can judge.

    Only for requests that are safe to repeat; the caller switches the SDK's own retries off
    (``retry=None``), so the guard's bound is the only one.
    """

    async def once(_: Attempt) -> T:
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise provider_error(stage, provider, exc) from exc

    return await guard.call(once, clock=clock, log=log)
