"""What the AWS stages share: region and credentials from AWS's standard chain, boto3 clients built
once per process, requests under the stage's provider guard, and botocore failures turned into
one ``ProviderError``.

Credentials never come from pipeline YAML: boto3's chain reads ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` and the shared files, web
identity, container and instance roles. botocore's own retries are switched off: a phone call
cannot wait out its default backoff, so the stage's guard retries instead, a bounded number of
times with a short backoff, and only where repeating the request is safe.
"""

from __future__ import annotations

import html
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
import botocore.loaders
import botocore.session
import structlog
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from voicebridge.clock import Clock
from voicebridge.runtime.process_cache import ProcessCache
from voicebridge.runtime.providers import ErrorKind, ProviderError, kind_from_http_status
from voicebridge.runtime.resilience import Attempt, ProviderGuard
from voicebridge.runtime.stage import StageError
from voicebridge.runtime.workers import WorkerPoolFull, run_blocking

T = TypeVar("T")

__all__ = [
    "USER_AGENT",
    "ClientSettings",
    "clear_clients",
    "frozen_credentials",
    "get_client",
    "is_connect_failure",
    "kind_from_aws_code",
    "provider_error",
    "resolve_region",
    "run_guarded",
    "ssml_to_text",
]

USER_AGENT = "voicebridge"
_log = structlog.get_logger("voicebridge.aws")

# AWS error codes (the ``__type``/``x-amzn-ErrorType`` of a response, or ``:exception-type`` of an
# event-stream exception) by kind. Unlisted codes fall back to the HTTP status.
_CODE_KINDS: dict[str, ErrorKind] = {
    **dict.fromkeys(
        (
            "AccessDeniedException",
            "AccessDenied",
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "SignatureDoesNotMatch",
            "IncompleteSignature",
            "MissingAuthenticationToken",
            "InvalidClientTokenId",
            "ExpiredToken",
            "ExpiredTokenException",
            "NotAuthorized",
        ),
        "auth",
    ),
    **dict.fromkeys(
        (
            "ThrottlingException",
            "Throttling",
            "TooManyRequestsException",
            "LimitExceededException",
            "ServiceQuotaExceededException",
            "RequestLimitExceeded",
        ),
        "quota",
    ),
    **dict.fromkeys(
        (
            "ValidationException",
            "BadRequestException",
            "ResourceNotFoundException",
            "ConflictException",
            "SerializationException",
            "InvalidParameterException",
            "InvalidParameterValue",
            "InvalidSsmlException",
            "TextLengthExceededException",
            "InvalidSampleRateException",
            "LanguageNotSupportedException",
            "EngineNotSupportedException",
            "LexiconNotFoundException",
            "MarksNotSupportedForFormatException",
            "SsmlMarksNotSupportedForTextTypeException",
        ),
        "invalid",
    ),
    **dict.fromkeys(
        (
            "InternalFailure",
            "InternalFailureException",
            "InternalServerException",
            "InternalServerError",
            "ServiceUnavailable",
            "ServiceUnavailableException",
            "ServiceFailureException",
            "BadGatewayException",
            "DependencyFailedException",
        ),
        "unavailable",
    ),
    **dict.fromkeys(("RequestTimeout", "RequestTimeoutException"), "timeout"),
}


def kind_from_aws_code(code: str | None, status: int | None = None) -> ErrorKind:
    """The error kind of an AWS error code; the HTTP status decides for codes not listed."""
    if code and code in _CODE_KINDS:
        return _CODE_KINDS[code]
    if status:
        return kind_from_http_status(status)
    return "other"


def provider_error(stage: str, provider: str, exc: BaseException) -> ProviderError:
    """One ProviderError for whatever boto3/botocore (or the worker pool) raised."""
    if isinstance(exc, ProviderError):
        return exc
    kind: ErrorKind
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {}) or {}
        code = str(error.get("Code") or "") or None
        meta = exc.response.get("ResponseMetadata", {}) or {}
        status = meta.get("HTTPStatusCode")
        message = str(error.get("Message") or exc)
        kind = kind_from_aws_code(code, status if isinstance(status, int) else None)
        label = f"{code}: {message}" if code else message
        return ProviderError(stage, provider, kind, label, status=status or code)
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError | TimeoutError):
        kind = "timeout"
    elif isinstance(exc, EndpointConnectionError | ConnectionClosedError | ConnectionError):
        kind = "unavailable"
    elif isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        kind = "auth"
    elif isinstance(exc, NoRegionError | ParamValidationError):
        kind = "invalid"
    elif isinstance(exc, WorkerPoolFull):
        kind = "unavailable"
    else:
        kind = "other"
    return ProviderError(stage, provider, kind, f"{type(exc).__name__}: {exc}")


_TAG = re.compile(r"<[^>]*>")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,!?;:])")


def ssml_to_text(ssml: str) -> str:
    """What SSML says aloud, near enough for a history or a plain-text speaker."""
    text = " ".join(html.unescape(_TAG.sub(" ", ssml)).split())
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)


def is_connect_failure(exc: BaseException) -> bool:
    """The request never reached AWS (so repeating it cannot repeat its effect)."""
    return isinstance(exc, BotoConnectionError)


# --- region and credentials ----------------------------------------------------------------------

_lock = threading.Lock()  # boto3 sessions are not thread-safe to create clients from
_loader: Any = None
_profile_region: str | None = None


def _new_session() -> boto3.session.Session:
    """A boto3 session sharing one model loader with every other, so service models are read
    from disk once per process (not per client). Call with ``_lock`` held."""
    global _loader
    if _loader is None:
        _loader = botocore.loaders.create_loader()
    core = botocore.session.Session()
    core.register_component("data_loader", _loader)
    return boto3.session.Session(botocore_session=core)


def resolve_region(region: str | None) -> str:
    """The stage's ``region``, else AWS_REGION / AWS_DEFAULT_REGION / the profile's region."""
    if region:
        return region
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    global _profile_region
    with _lock:
        if _profile_region is None:  # read the shared config files once, not on every call
            _profile_region = _new_session().region_name or ""
        configured = _profile_region
    if configured:
        return configured
    raise StageError(
        "no AWS region: set the stage's region parameter, or AWS_REGION / AWS_DEFAULT_REGION"
    )


_credential_session: boto3.session.Session | None = None


def frozen_credentials() -> ReadOnlyCredentials:
    """Current credentials from the standard chain (blocking: may refresh a role's token)."""
    global _credential_session
    with _lock:
        if _credential_session is None:
            _credential_session = _new_session()
        credentials = _credential_session.get_credentials()
    if credentials is None:
        raise NoCredentialsError()
    frozen: ReadOnlyCredentials = credentials.get_frozen_credentials()
    return frozen


# --- clients -------------------------------------------------------------------------------------


def empty_is_default(value: object) -> object:
    """An endpoint param's validator: the empty string (``${VAR:-}`` unset) means AWS's own."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Everything that makes two stages' clients different; equal settings share a client."""

    service: str
    region: str
    endpoint_url: str | None = None
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    max_connections: int = 16

    @classmethod
    def for_stage(cls, service: str, params: Any) -> ClientSettings:
        """Settings from a stage's params (``region``, ``endpoint_url``, timeouts, ``workers``)."""
        return cls(
            service=service,
            region=resolve_region(params.region),
            endpoint_url=params.endpoint_url,
            connect_timeout_s=params.connect_timeout_s,
            read_timeout_s=params.read_timeout_s,
            max_connections=params.workers,
        )


def _new_client(settings: ClientSettings) -> Any:
    """A boto3 client for ``settings``. Call with ``_lock`` held (it makes a session)."""
    config = Config(
        region_name=settings.region,
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=settings.max_connections,
        tcp_keepalive=True,
        user_agent_extra=USER_AGENT,
    )
    return _new_session().client(
        settings.service,
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        config=config,
    )


_clients: ProcessCache[ClientSettings, Any] = ProcessCache(_new_client, lock=_lock)


def get_client(settings: ClientSettings) -> Any:
    """The process-wide boto3 client for ``settings`` (created on first use; blocking).

    boto3 clients are thread-safe, keep a connection pool, and cost tens of milliseconds to
    build (they load the service model), so every call of a service shares one.
    """
    return _clients.get(settings)


def clear_clients() -> None:
    """Forget cached clients and credentials (tests that change the environment)."""
    global _credential_session, _profile_region
    _clients.clear()  # takes ``_lock`` itself
    with _lock:
        _credential_session = None
        _profile_region = None


# --- calls ---------------------------------------------------------------------------------------


async def run_guarded(
    pool: str,
    fn: Callable[..., T],
    *args: Any,
    guard: ProviderGuard,
    stage: str,
    provider: str,
    workers: int,
    clock: Clock,
    log: Any = None,
) -> T:
    """Run the blocking ``fn(*args)`` in the named worker pool under the stage's ``guard`` (see
    :mod:`voicebridge.runtime.resilience`): its retry policy, first-byte deadline and circuit
    breaker, on ``clock`` (the call's). botocore failures become a ``ProviderError`` of
    ``stage`` whose ``__cause__`` is the original, for the stage's ``retry_if``.

    Cancelling the caller (barge-in) stops at once: a request still in its thread finishes there
    and its result is discarded; no further attempt starts.
    """

    async def attempt_once(_: Attempt) -> T:
        try:
            return await run_blocking(pool, fn, *args, max_workers=workers, max_queue=workers * 4)
        except (BotoCoreError, ClientError, WorkerPoolFull, OSError) as exc:
            raise provider_error(stage, provider, exc) from exc

    return await guard.call(attempt_once, clock=clock, log=log or _log)
