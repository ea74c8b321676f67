"""A small async client for the Plivo REST calls voicebridge makes: place, hang up, transfer.

Plivo's SDK is synchronous (``requests``) and covers hundreds of endpoints; we need three, from an
event loop, with retries that fit each call's semantics, and with logs that never carry the token.

Wire format (Plivo's "Make an outbound call", "Hang up a call" and "Transfer a call" pages, and
``plivo-python``'s ``Calls.create`` / ``Calls.delete`` / ``Calls.update``)::

    DELETE {base}/v1/Account/{auth_id}/Call/{call_uuid}/    -> 204, or 404 if the call already ended
    POST   {base}/v1/Account/{auth_id}/Call/{call_uuid}/    -> 202 {"message": ..., "api_id": ...}
           JSON body {"legs": "aleg", "aleg_url": ..., "aleg_method": "POST"}

    POST   {base}/v1/Account/{auth_id}/Call/                -> 201 {"message": "call fired",
           JSON body {"from", "to", "answer_url", ...}       "request_uuid": ..., "api_id": ...}

all with HTTP basic auth (auth id, auth token). Errors come back as JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import quote

import httpx
import structlog

from voicebridge.telephony.call_request import CallCreated, CallRequest

log = structlog.get_logger("voicebridge.telephony.plivo_rest")

DEFAULT_BASE_URL: Final = "https://api.plivo.com"

# A Retry-After longer than this is not waited for: hang-up and transfer happen while a caller is
# on the line, so a long server-imposed wait is no better than failing and letting the caller of
# this client decide. Longer values fall back to our own exponential backoff.
MAX_RETRY_AFTER_S: Final = 5.0
# Placing a call has nobody waiting on the line: a 429's Retry-After is honoured up to this.
MAX_CREATE_RETRY_AFTER_S: Final = 60.0

# Plivo's error text is echoed into exceptions and logs; keep a misbehaving proxy's HTML page short.
_MAX_ERROR_TEXT: Final = 200

_USER_AGENT: Final = "voicebridge-plivo-rest/1"

Sleep = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True, repr=False)
class PlivoCredentials:
    """A Plivo auth id and auth token. The token never appears in ``repr`` or ``str``."""

    auth_id: str
    auth_token: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> PlivoCredentials | None:
        """``PLIVO_AUTH_ID`` and ``PLIVO_AUTH_TOKEN``; None unless both are set and non-empty."""
        auth_id = environ.get("PLIVO_AUTH_ID", "").strip()
        auth_token = environ.get("PLIVO_AUTH_TOKEN", "").strip()
        if not auth_id or not auth_token:
            return None
        return cls(auth_id, auth_token)

    def __repr__(self) -> str:
        return f"PlivoCredentials(auth_id={self.auth_id!r}, auth_token='***')"


class PlivoRestError(Exception):
    """A Plivo REST call that failed for good (after any retries).

    ``reason`` is a short slug for logs and metrics: ``unauthorized``, ``forbidden``,
    ``bad_request``, ``call_not_found``, ``rate_limited``, ``server_error``, ``timeout``,
    ``network``, ``unexpected_status``. ``status`` is the last HTTP status, None when no response
    came. The message names the operation, the call and Plivo's error text, never the token.
    """

    def __init__(
        self,
        operation: str,
        call_uuid: str,
        *,
        reason: str,
        status: int | None = None,
        plivo_error: str | None = None,
        detail: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.operation = operation
        self.call_uuid = call_uuid
        self.reason = reason
        self.status = status
        self.plivo_error = plivo_error
        self.attempts = attempts
        parts = [f"Plivo {operation} of call {call_uuid!r} failed: {reason}"]
        if status is not None:
            parts.append(f"(HTTP {status})")
        if plivo_error:
            parts.append(f"- Plivo says: {plivo_error!r}")
        if detail:
            parts.append(f"- {detail}")
        if attempts > 1:
            parts.append(f"after {attempts} attempts")
        super().__init__(" ".join(parts))


_STATUS_REASONS: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "call_not_found",
    429: "rate_limited",
}


def _status_reason(status: int) -> str:
    if status >= 500:
        return "server_error"
    return _STATUS_REASONS.get(status, "unexpected_status")


def _retryable_status(status: int) -> bool:
    return status >= 500 or status == 429


def _retry_after_s(response: httpx.Response) -> float | None:
    """Retry-After as seconds (a number or an HTTP date); None if absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _plivo_error_text(response: httpx.Response) -> str | None:
    """Plivo's ``{"error": "..."}`` text, else a short piece of the body, else None."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:_MAX_ERROR_TEXT] or None
    if isinstance(body, dict) and "error" in body:
        error = body["error"]
        text = error if isinstance(error, str) else str(error)
        return text[:_MAX_ERROR_TEXT]
    return None


def _transport_reason(exc: httpx.TransportError) -> str:
    return "timeout" if isinstance(exc, httpx.TimeoutException) else "network"


# Errors raised before any byte of the request reached Plivo: retrying cannot duplicate an action.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class PlivoRest:
    """Hang up and transfer Plivo calls over REST, with bounded retries.

    ``retries`` is the total number of attempts (at least 1). Between attempts the client sleeps
    ``backoff_s * 2**(attempt - 1)`` (0.25 s, 0.5 s, ...), or Plivo's ``Retry-After`` on a 429 when
    that is longer and at most ``MAX_RETRY_AFTER_S``. ``timeout_s`` bounds each phase of one
    attempt (connect, write, read). ``transport`` and ``sleep`` are for tests.
    """

    def __init__(
        self,
        credentials: PlivoCredentials,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.25,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not credentials.auth_id:
            raise ValueError("Plivo auth_id must not be empty")
        if not credentials.auth_token:
            raise ValueError("Plivo auth_token must not be empty")
        if retries < 1:
            raise ValueError(f"retries is the number of attempts and must be >= 1, not {retries}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, not {timeout_s}")
        if backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, not {backoff_s}")
        self.auth_id = credentials.auth_id
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self._token = credentials.auth_token
        self._sleep = sleep
        self._client = httpx.AsyncClient(
            auth=httpx.BasicAuth(credentials.auth_id, credentials.auth_token),
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            headers={"User-Agent": _USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **options: Any) -> PlivoRest | None:
        """A client from ``PLIVO_AUTH_ID``/``PLIVO_AUTH_TOKEN`` (None without them).

        ``PLIVO_API_URL`` overrides the base URL, so a staging stack or a local fake can stand in
        for api.plivo.com without code changes. ``options`` go to the constructor.
        """
        credentials = PlivoCredentials.from_env(environ)
        if credentials is None:
            return None
        base_url = environ.get("PLIVO_API_URL", "").strip()
        if base_url:
            options["base_url"] = base_url
        return cls(credentials, **options)

    def __repr__(self) -> str:
        return f"PlivoRest(auth_id={self.auth_id!r}, base_url={self.base_url!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> PlivoRest:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def call_url(self, call_uuid: str) -> str:
        """``{base}/v1/Account/{auth_id}/Call/{call_uuid}/``, each id quoted as one path segment."""
        if not call_uuid or not call_uuid.strip():
            raise ValueError("call_uuid must not be empty")
        account = quote(self.auth_id, safe="")
        call = quote(call_uuid, safe="")
        return f"{self.base_url}/v1/Account/{account}/Call/{call}/"

    async def hangup(self, call_uuid: str) -> Literal["hung_up", "already_ended"]:
        """End a call. A call that already ended is not an error: hanging up is the goal either way.

        Hang-up is idempotent (a repeat gets 404, which we report as ``already_ended``), so every
        transient failure is retried, including timeouts after the request was sent.
        """
        url = self.call_url(call_uuid)
        response = await self._send(
            "hangup", call_uuid, lambda: self._client.delete(url), retry_after_send=True
        )
        status = response.status_code
        if status == 404:
            log.info(
                "plivo_rest_done",
                op="hangup",
                call_uuid=call_uuid[:64],
                status=status,
                outcome="already_ended",
            )
            return "already_ended"
        if 200 <= status < 300:
            log.info(
                "plivo_rest_done",
                op="hangup",
                call_uuid=call_uuid[:64],
                status=status,
                outcome="hung_up",
            )
            return "hung_up"
        raise self._fail("hangup", call_uuid, response)

    async def transfer(self, call_uuid: str, aleg_url: str, *, aleg_method: str = "POST") -> None:
        """Make the call (its A leg) fetch and run the XML at ``aleg_url``.

        Sent as JSON, like Plivo's own SDK. Retried only when Plivo cannot have acted: the
        connection failed before the request went out, or Plivo answered 5xx/429. Transferring
        twice to the same URL ends in the same place, but it restarts that URL's XML (a ``<Dial>``
        that had started ringing an agent would ring again, and Plivo caps transfers per call), so
        a timeout after the request was sent is reported instead of retried.
        """
        if not aleg_url or not aleg_url.startswith(("http://", "https://")):
            raise ValueError(f"aleg_url must be an http(s) URL, not {aleg_url!r}")
        method = aleg_method.upper()
        if method not in ("GET", "POST"):
            raise ValueError(f"aleg_method must be GET or POST, not {aleg_method!r}")
        url = self.call_url(call_uuid)
        body = {"legs": "aleg", "aleg_url": aleg_url, "aleg_method": method}
        response = await self._send(
            "transfer", call_uuid, lambda: self._client.post(url, json=body), retry_after_send=False
        )
        if 200 <= response.status_code < 300:
            log.info(
                "plivo_rest_done",
                op="transfer",
                call_uuid=call_uuid[:64],
                status=response.status_code,
                outcome="transferred",
            )
            return
        raise self._fail("transfer", call_uuid, response)

    def calls_url(self) -> str:
        """``{base}/v1/Account/{auth_id}/Call/``: where calls are created."""
        return f"{self.base_url}/v1/Account/{quote(self.auth_id, safe='')}/Call/"

    async def create_call(self, call: CallRequest) -> CallCreated:
        """Place an outbound call; returns Plivo's ``request_uuid``.

        Retried on 5xx and 429 (honouring Retry-After up to ``MAX_CREATE_RETRY_AFTER_S``) and
        when the connection failed before sending. A timeout after the request went out is not
        retried: Plivo may have placed the call, and a retry would ring the person twice.
        """
        url = self.calls_url()
        body = call.fields()
        subject = f"to {call.to}"
        response = await self._send(
            "create_call",
            subject,
            lambda: self._client.post(url, json=body),
            retry_after_send=False,
            max_retry_after_s=MAX_CREATE_RETRY_AFTER_S,
        )
        if 200 <= response.status_code < 300:
            try:
                payload = response.json()
            except ValueError:
                payload = None
            if not isinstance(payload, dict) or not isinstance(payload.get("request_uuid"), str):
                raise PlivoRestError(
                    "create_call",
                    subject,
                    reason="unexpected_status",
                    status=response.status_code,
                    detail="the answer has no request_uuid",
                )
            api_id = payload.get("api_id")
            created = CallCreated(
                request_uuid=payload["request_uuid"][:100],
                message=str(payload.get("message", ""))[:100],
                api_id=api_id[:100] if isinstance(api_id, str) else None,
            )
            log.info(
                "plivo_rest_done",
                op="create_call",
                request_uuid=created.request_uuid,
                status=response.status_code,
                outcome="call_fired",
            )
            return created
        raise self._fail("create_call", subject, response)

    async def _send(
        self,
        operation: str,
        call_uuid: str,
        request: Callable[[], Awaitable[httpx.Response]],
        *,
        retry_after_send: bool,
        max_retry_after_s: float = MAX_RETRY_AFTER_S,
    ) -> httpx.Response:
        """Run ``request`` up to ``retries`` times; return the first final response.

        A response is final unless it is 5xx/429; a transport error is retried when it happened
        before sending, or always if ``retry_after_send``. Raises PlivoRestError when attempts run
        out or a transport error may not be retried.
        """
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = await request()
            except httpx.TransportError as exc:
                reason = _transport_reason(exc)
                retryable = retry_after_send or isinstance(exc, _NOT_SENT)
                error_text = self._scrub(f"{type(exc).__name__}: {exc}")
                if not retryable or attempt >= self.retries:
                    log.warning(
                        "plivo_rest_failed",
                        op=operation,
                        call_uuid=call_uuid[:64],
                        status=None,
                        reason=reason,
                        attempts=attempt,
                        error=error_text,
                    )
                    detail = error_text
                    if not retryable:
                        detail += "; not retried: the request may have reached Plivo"
                    raise PlivoRestError(
                        operation, call_uuid, reason=reason, detail=detail, attempts=attempt
                    ) from None
                status: int | None = None
            else:
                if not _retryable_status(response.status_code):
                    return response
                if attempt >= self.retries:
                    raise self._fail(operation, call_uuid, response, attempts=attempt)
                status = response.status_code
                reason = _status_reason(status)
                error_text = _plivo_error_text(response) or ""
                if status == 429:
                    retry_after = _retry_after_s(response)
            delay = self.backoff_s * 2 ** (attempt - 1)
            if retry_after is not None and retry_after <= max_retry_after_s:
                delay = max(delay, retry_after)
            log.warning(
                "plivo_rest_attempt_failed",
                op=operation,
                call_uuid=call_uuid[:64],
                status=status,
                reason=reason,
                attempt=attempt,
                retry_in_s=delay,
                error=self._scrub(error_text),
            )
            await self._sleep(delay)

    def _fail(
        self, operation: str, call_uuid: str, response: httpx.Response, *, attempts: int = 1
    ) -> PlivoRestError:
        """Log and build the error for a final non-success response."""
        status = response.status_code
        reason = _status_reason(status)
        plivo_error = _plivo_error_text(response)
        if plivo_error is not None:
            plivo_error = self._scrub(plivo_error)
        log.warning(
            "plivo_rest_failed",
            op=operation,
            call_uuid=call_uuid[:64],
            status=status,
            reason=reason,
            attempts=attempts,
            error=plivo_error,
        )
        return PlivoRestError(
            operation,
            call_uuid,
            reason=reason,
            status=status,
            plivo_error=plivo_error,
            attempts=attempts,
        )

    def _scrub(self, text: str) -> str:
        """Belt and braces: an echoing proxy or exception text must not leak the token."""
        return text.replace(self._token, "***") if self._token else text
