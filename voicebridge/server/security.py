"""Who may use the service: Plivo's request signatures on HTTP, stream tokens on the WebSocket.

Plivo signs ``/answer``, ``/status`` and ``/transfer`` requests (V3 signature, ``PROTOCOL.md``) but
not the WebSocket it opens. So ``/answer``, once its request is proven to be Plivo's, puts a
short-lived token bound to the call in the ``<Stream>`` URL, and ``/stream`` admits only that.
Secrets come from the environment only; nothing here logs them.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlunsplit

import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.websockets import WebSocket

from voicebridge.config.errors import ConfigError, ConfigIssue
from voicebridge.config.service_settings import ServiceSettings
from voicebridge.observe.bounded import bounded
from voicebridge.plivo.errors import ProtocolError
from voicebridge.plivo.events import StartEvent, parse_event
from voicebridge.plivo.signature import ParamValue, validate_v3_signature
from voicebridge.server.forms import FormError, form_fields
from voicebridge.server.stream_token import (
    MIN_SECRET_BYTES,
    Claim,
    MemoryTokenStore,
    StreamToken,
    StreamTokenCodec,
    TimeFn,
    TokenError,
    TokenStore,
)
from voicebridge.server.urls import public_base

log = structlog.get_logger("voicebridge.security")

AUTH_TOKEN_VARS = ("PLIVO_AUTH_TOKEN", "PLIVO_MAIN_AUTH_TOKEN")
STREAM_SECRET_VAR = "VOICEBRIDGE_STREAM_SECRET"
SIGNATURE_HEADERS = ("x-plivo-signature-v3", "x-plivo-signature-ma-v3")
NONCE_HEADER = "x-plivo-signature-v3-nonce"
TOKEN_PARAM = "token"
MAX_STREAM_CONNECTIONS = 3  # the first connection and Plivo's two retries

# Session end reasons after which the call is over for good: its token opens nothing more.
_FINAL_REASONS = ("stop_event", "idle", "max_call_duration", "transferred")

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class SecurityConfig:
    """The resolved protections. Build it with ``from_env``; ``repr`` never shows a secret."""

    verify_signatures: bool = False
    auth_tokens: tuple[str, ...] = field(default=(), repr=False)
    stream_tokens: bool = False
    stream_secret: bytes | None = field(default=None, repr=False)
    token_ttl_s: float = 60.0
    time_fn: TimeFn = field(default=time.time, repr=False, compare=False)

    @classmethod
    def from_env(
        cls,
        settings: ServiceSettings,
        environ: Mapping[str, str] | None = None,
        *,
        time_fn: TimeFn = time.time,
    ) -> SecurityConfig:
        """``auto`` turns a protection on when its secret is set. Raises ConfigError when a
        protection is ``on`` without its secret, or the stream secret is too short."""
        env = os.environ if environ is None else environ
        mode = settings.security
        tokens = tuple(t for t in (env.get(v, "").strip() for v in AUTH_TOKEN_VARS) if t)
        secret = env.get(STREAM_SECRET_VAR, "").strip().encode()
        issues: list[ConfigIssue] = []
        if mode.verify_signatures == "on" and not tokens:
            issues.append(
                ConfigIssue(
                    "environment",
                    None,
                    None,
                    "security.verify_signatures",
                    "is 'on' but PLIVO_AUTH_TOKEN is not set (or set it to 'auto'/'off')",
                )
            )
        use_tokens = mode.stream_token == "on" or (mode.stream_token == "auto" and bool(secret))
        if use_tokens and len(secret) < MIN_SECRET_BYTES:
            issues.append(
                ConfigIssue(
                    "environment",
                    None,
                    None,
                    "security.stream_token",
                    f"{STREAM_SECRET_VAR} must hold at least {MIN_SECRET_BYTES} bytes"
                    + (" (it is not set)" if not secret else "")
                    + "; e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
                )
            )
        if issues:
            raise ConfigError(issues)
        config = cls(
            verify_signatures=mode.verify_signatures != "off" and bool(tokens),
            auth_tokens=tokens,
            stream_tokens=use_tokens,
            stream_secret=secret if use_tokens else None,
            token_ttl_s=mode.stream_token_ttl_s,
            time_fn=time_fn,
        )
        if not config.verify_signatures and not _loopback(settings.host):
            # Tokens alone stop direct /stream connections, but anyone can still ask /answer
            # for one: only Plivo's signature makes the token Plivo's.
            log.warning(
                "security_off",
                host=settings.host,
                stream_tokens="on" if config.stream_tokens else "off",
                detail="anyone who reaches this port can fetch /answer"
                + ("" if config.stream_tokens else " and open /stream")
                + "; set PLIVO_AUTH_TOKEN and VOICEBRIDGE_STREAM_SECRET (docs/security.md)",
            )
        return config


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# --- HTTP: Plivo's signatures ---------------------------------------------------------------
def signed_url(request: Request, public_url: str | None) -> str:
    """The URL Plivo requested: behind TLS termination that is the public one, not ours."""
    scheme, host, prefix = public_base(request, public_url)
    http_scheme = "https" if scheme == "wss" else "http"
    return urlunsplit((http_scheme, host, prefix + request.url.path, request.url.query, ""))


class SignatureGuard:
    """Refuses (403) requests to protected routes without a valid Plivo V3 signature.

    A signature is valid in ``X-Plivo-Signature-V3`` or ``X-Plivo-Signature-Ma-V3`` when any of
    the configured tokens (``PLIVO_AUTH_TOKEN``, ``PLIVO_MAIN_AUTH_TOKEN``) made it: only Plivo and
    we know those, whichever account signed.
    """

    def __init__(self, auth_tokens: tuple[str, ...], public_url: str | None) -> None:
        self._tokens = auth_tokens
        self.public_url = public_url
        self.enabled = bool(auth_tokens)
        self.refusals: Counter[str] = Counter()  # by reason, for metrics

    @classmethod
    def from_config(cls, config: SecurityConfig, public_url: str | None) -> SignatureGuard:
        """A guard that checks when ``verify_signatures`` is on, and lets all through if not."""
        return cls(config.auth_tokens if config.verify_signatures else (), public_url)

    def __repr__(self) -> str:
        return f"SignatureGuard(tokens={len(self._tokens)}, public_url={self.public_url!r})"

    async def check(self, request: Request) -> Response | None:
        """None when the request is Plivo's, else the 403 to send."""
        headers = request.headers
        signatures = [headers.get(name, "") for name in SIGNATURE_HEADERS]
        nonce = headers.get(NONCE_HEADER, "")
        url = signed_url(request, self.public_url)
        if not nonce or not any(signatures):
            return self._refuse(request, url, "missing_signature")
        params: dict[str, ParamValue] = {}
        try:
            for key, values in (await form_fields(request)).items():
                params[key] = values[0] if len(values) == 1 else values
        except FormError:
            return self._refuse(request, url, "unreadable_body")
        for header in signatures:
            for token in self._tokens:
                if header and validate_v3_signature(
                    request.method, url, params, nonce, header, token
                ):
                    return None
        return self._refuse(request, url, "bad_signature")

    def _refuse(self, request: Request, url: str, reason: str) -> Response:
        self.refusals[reason] += 1
        log.warning(
            "request_refused",
            reason=reason,
            method=request.method,
            path=bounded(request.url.path, 100),
            # What we checked against, without the query; its host may come from a header.
            signed_url=bounded(url.split("?", 1)[0], 200),
            client=bounded(request.client.host if request.client else None, 64),
        )
        return PlainTextResponse(f"forbidden: {reason.replace('_', ' ')}", status_code=403)

    def protect(self, endpoint: Endpoint) -> Endpoint:
        """``endpoint`` behind the check; as it is when the guard is off."""
        if not self.enabled:
            return endpoint

        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            refused = await self.check(request)
            return refused if refused is not None else await endpoint(request)

        return guarded


# --- WebSocket: stream tokens --------------------------------------------------------------
class StreamRefused(Exception):
    """A connection the token rules refuse; ``reason`` is the slug logged and sent to the peer."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"stream token refused: {reason}")
        self.reason = reason


class StreamTicket:
    """One admitted connection's hold on its token, until ``close``."""

    def __init__(self, token: StreamToken, store: TokenStore, refusals: Counter[str]) -> None:
        self.token = token
        self._store = store
        self._refusals = refusals
        self.bound = False  # the start event named the token's call
        self._closed = False

    def check_message(self, message: str | bytes) -> None:
        """Before the call starts: raise StreamRefused when ``start`` names another call."""
        if self.bound:
            return
        try:
            event = parse_event(message)
        except ProtocolError:
            return  # the session reports bad input; this check is only about whose call it is
        if isinstance(event, StartEvent):
            if event.call_id != self.token.call_id:
                log.warning(
                    "stream_refused",
                    reason="foreign_call",
                    call_id=event.call_id[:64],
                    token_call_id=self.token.call_id[:64],
                )
                self._refusals["foreign_call"] += 1
                raise StreamRefused("foreign_call")
            self.bound = True

    def close(self, *, end_reason: str | None, peer_code: int | None) -> None:
        """Give the token back: finished when the call is over, released when it may return."""
        if self._closed:
            return
        self._closed = True
        over = peer_code == 1000 or (
            end_reason is not None
            and (end_reason in _FINAL_REASONS or end_reason.startswith("hangup:"))
        )
        if over and self.bound:
            self._store.finish(self.token.jti)
        else:
            self._store.release(self.token.jti)


class StreamGuard:
    """Mints tokens for ``/answer`` and admits ``/stream`` connections that carry one."""

    def __init__(self, codec: StreamTokenCodec, store: TokenStore) -> None:
        self.codec = codec
        self.store = store
        self.admitted = 0
        self.refusals: Counter[str] = Counter()  # by reason, for metrics

    @classmethod
    def from_config(cls, config: SecurityConfig) -> StreamGuard | None:
        if not config.stream_tokens or config.stream_secret is None:
            return None
        codec = StreamTokenCodec(
            config.stream_secret, ttl_s=config.token_ttl_s, time_fn=config.time_fn
        )
        store = MemoryTokenStore(
            max_connections=MAX_STREAM_CONNECTIONS,
            reconnect_window_s=config.token_ttl_s,
            time_fn=config.time_fn,
        )
        return cls(codec, store)

    def stream_query(self, call_uuid: str) -> str:
        """The query string for the ``<Stream>`` URL of this call. ValueError without a usable
        call UUID: a token bound to no call would be a token for any call."""
        return urlencode({TOKEN_PARAM: self.codec.mint(call_uuid)})

    def admit(self, ws: WebSocket) -> StreamTicket:
        """A ticket for this handshake, or StreamRefused (logged, without the token)."""
        client = ws.client.host if ws.client else None
        try:
            token = self.codec.verify(ws.query_params.get(TOKEN_PARAM))
        except TokenError as exc:
            self.refusals[exc.reason] += 1
            log.warning("stream_refused", reason=exc.reason, client=client)
            raise StreamRefused(exc.reason) from None
        claim = self.store.claim(token.jti, token.call_id, token.expires_at)
        if not claim.ok:
            self.refusals[claim.value] += 1
            log.warning(
                "stream_refused", reason=claim.value, call_id=token.call_id[:64], client=client
            )
            raise StreamRefused(claim.value)
        self.admitted += 1
        return StreamTicket(token, self.store, self.refusals)


async def refuse_handshake(ws: WebSocket, reason: str) -> None:
    """Reject before the WebSocket opens: HTTP 403 with the reason as a one-line body."""
    response = PlainTextResponse(f"stream token refused: {reason}", status_code=403)
    try:
        await ws.send_denial_response(response)
    except RuntimeError:  # a server without the denial-response extension: a bare 403
        await ws.close(1008)


def security_summary(config: SecurityConfig) -> dict[str, Any]:
    """What is on, for the start-up log line (never the secrets themselves)."""
    return {
        "plivo_request_checks": "on" if config.verify_signatures else "off",
        "stream_tokens": "on" if config.stream_tokens else "off",
        "stream_token_ttl_s": config.token_ttl_s,
    }


__all__ = [
    "Claim",
    "SecurityConfig",
    "SignatureGuard",
    "StreamGuard",
    "StreamRefused",
    "StreamTicket",
    "refuse_handshake",
    "security_summary",
    "signed_url",
]
