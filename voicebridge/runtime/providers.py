"""What provider stages share: one error type, so a provider failure never means dead air.

A stage that calls a cloud API turns whatever its SDK raised into a ``ProviderError`` naming the
stage, the provider, the kind of failure and the provider's own message. The pipeline does not
treat it as fatal: the session logs it once and speaks the pipeline's ``fallback_text`` (when a
speaker is still working), and the call goes on.
"""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["auth", "quota", "invalid", "unavailable", "timeout", "cancelled", "other"]

RETRYABLE: frozenset[str] = frozenset({"unavailable", "timeout"})


class ProviderError(Exception):
    """A provider call failed; ``kind`` says whether retrying could help."""

    def __init__(
        self,
        stage: str,
        provider: str,
        kind: ErrorKind,
        message: str,
        *,
        status: int | str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.stage = stage
        self.provider = provider
        self.kind: ErrorKind = kind
        self.provider_message = message[:500]
        self.status = status
        # The provider's own hint (Retry-After) of when to try again, in seconds.
        self.retry_after_s = retry_after_s
        # Set when a circuit breaker refused the request without sending it: the provider has
        # been failing for every call, not just this one.
        self.circuit_open = False
        # Set by a speech-to-speech stage that has no session to speak through (its model is
        # the call's only voice): the call cannot say a fallback or goodbye until it is back.
        self.voice_lost = False
        detail = f" (status {status})" if status is not None else ""
        super().__init__(f"{stage}: {provider} {kind} error{detail}: {self.provider_message}")

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


def retry_after_from_headers(headers: object) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds form), if present."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except (TypeError, ValueError):
            continue  # an HTTP date: too rare from these APIs to be worth parsing
        if seconds >= 0:
            return seconds
    return None


def kind_from_http_status(status: int) -> ErrorKind:
    """The usual mapping of an HTTP status to an error kind."""
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "quota"
    if status in (400, 404, 409, 413, 422):
        return "invalid"
    if status in (408, 504):
        return "timeout"
    if status >= 500:
        return "unavailable"
    return "other"


def kind_from_grpc_code(code_name: str) -> ErrorKind:
    """The usual mapping of a gRPC status code name (``StatusCode.X.name``) to an error kind."""
    kinds: dict[str, ErrorKind] = {
        "UNAUTHENTICATED": "auth",
        "PERMISSION_DENIED": "auth",
        "RESOURCE_EXHAUSTED": "quota",
        "INVALID_ARGUMENT": "invalid",
        "NOT_FOUND": "invalid",
        "FAILED_PRECONDITION": "invalid",
        "OUT_OF_RANGE": "invalid",
        "UNAVAILABLE": "unavailable",
        "INTERNAL": "unavailable",
        "ABORTED": "unavailable",
        "DEADLINE_EXCEEDED": "timeout",
        "CANCELLED": "cancelled",
    }
    return kinds.get(code_name, "other")
