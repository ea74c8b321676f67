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
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
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
from voicebridge.server.nonces import MAX_NONCE_CHARS, NonceMemory
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
    secret_generated: bool = False  # no VOICEBRIDGE_STREAM_SECRET: made at start-up
    time_fn: TimeFn = field(default=time.time, repr=False, compare=False)

    @classmethod
    def from_env(
        cls,
        settings: ServiceSettings,
        environ: Mapping[str, str] | None = None,
        *,
        time_fn: TimeFn = time.time,
    ) -> SecurityConfig:
        """Stream tokens are on unless ``stream_token: off``: without ``VOICEBRIDGE_STREAM_SECRET``
        this process makes a secret of its own (``serve --workers N`` makes one for all its
        workers, see ``provide_stream_secret``). Signatures are checked when a Plivo token is
        set (``auto``). Raises ConfigError when ``verify_signatures: on`` has no token, or the
        stream secret given is too short."""
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
        use_tokens = mode.stream_token != "off"
        generated = use_tokens and not secret
        if generated:
            secret = make_stream_secret().encode()
            log.info(
                "stream_secret_generated",
                scope="process",
                detail=f"{STREAM_SECRET_VAR} is not set: stream tokens are signed with a secret "
                "made for this process; set it to share tokens across hosts",
            )
        if use_tokens and len(secret) < MIN_SECRET_BYTES:
            issues.append(
                ConfigIssue(
                    "environment",
                    None,
                    None,
                    "security.stream_token",
                    f"{STREAM_SECRET_VAR} must hold at least {MIN_SECRET_BYTES} bytes"
                    "; e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                    " (or unset it: the service then makes one)",
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
            secret_generated=generated,
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
                + "; set PLIVO_AUTH_TOKEN (docs/security.md)",
            )
        return config


def make_stream_secret() -> str:
    return secrets.token_urlsafe(32)


def provide_stream_secret(settings: ServiceSettings, environ: MutableMapping[str, str]) -> bool:
    """For ``serve --workers N``: put a generated stream secret in ``environ`` (which the worker
    processes inherit) when tokens are on and none is set, so every worker accepts the tokens
    any of them minted. True when it made one; the value is never logged."""
    if settings.security.stream_token == "off" or environ.get(STREAM_SECRET_VAR, "").strip():
        return False
    environ[STREAM_SECRET_VAR] = make_stream_secret()
    log.info(
        "stream_secret_generated",
        scope="workers",
        workers=settings.workers,
        detail=f"{STREAM_SECRET_VAR} is not set: the workers share a secret made at start-up; "
        "set it to share tokens across hosts",
    )
    return True


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

    def __init__(
        self,
        auth_tokens: tuple[str, ...],
        public_url: str | None,
        nonces: NonceMemory | None = None,
    ) -> None:
        self._tokens = auth_tokens
        self.public_url = public_url
        self.enabled = bool(auth_tokens)
        self.nonces = nonces if nonces is not None else NonceMemory()  # good once
        self.refusals: Counter[str] = Counter()  # by reason, for metrics

    @classmethod
    def from_config(
        cls, config: SecurityConfig, public_url: str | None, nonces: NonceMemory | None = None
    ) -> SignatureGuard:
        """A guard that checks when ``verify_signatures`` is on, and lets all through if not."""
        return cls(config.auth_tokens if config.verify_signatures else (), public_url, nonces)

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
        if len(nonce) > MAX_NONCE_CHARS:
            return self._refuse(request, url, "bad_signature")
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
                    if not await self.nonces.first_use(nonce):
                        return self._refuse(request, url, "replayed_request")
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
    """One admitted connection's hold on its token, until ``close``.

    Only one ticket holds a token at a time. A retry admitted while the token's live leg had
    gone quiet (``CallLegs.may_take_over``) takes the hold over from ``predecessor``; if the
    retry is then not admitted as the call's leg, the hold goes back.
    """

    def __init__(
        self,
        token: StreamToken,
        guard: StreamGuard,
        predecessor: StreamTicket | None = None,
    ) -> None:
        self.token = token
        self._guard = guard
        self.predecessor = predecessor
        self.bound = False  # the start event named the token's call
        self.leg_admitted = False  # the call's one live leg (``voicebridge.server.call_legs``)
        self.closed = False

    def check_message(self, message: str | bytes) -> None:
        """Before the call starts: raise StreamRefused when ``start`` names another call."""
        if self.bound:
            return
        try:
            event = parse_event(message)
        except ProtocolError:
            return  # the session reports bad input; this check is only about whose call it is
        if isinstance(event, StartEvent):
            self.check_start(event)

    def check_start(self, event: StartEvent) -> None:
        """Raise StreamRefused when ``start`` names another call than the token's."""
        if event.call_id != self.token.call_id:
            log.warning(
                "stream_refused",
                reason="foreign_call",
                call_id=event.call_id[:64],
                token_call_id=self.token.call_id[:64],
            )
            self._guard.refusals["foreign_call"] += 1
            raise StreamRefused("foreign_call")
        self.bound = True

    def close(self, *, end_reason: str | None, peer_code: int | None) -> None:
        """Give the token back: finished when the call is over, released when it may return."""
        if self.closed:
            return
        self.closed = True
        self._guard.closed(self, end_reason=end_reason, peer_code=peer_code)


class StreamGuard:
    """Mints tokens for ``/answer`` and admits ``/stream`` connections that carry one."""

    def __init__(
        self,
        codec: StreamTokenCodec,
        store: TokenStore,
        *,
        may_take_over: Callable[[str, str], bool] = lambda call_id, jti: False,
    ) -> None:
        self.codec = codec
        self.store = store
        # Whether the call's live leg holds this token and has gone quiet (CallLegs).
        self.may_take_over = may_take_over
        self.admitted = 0
        self.refusals: Counter[str] = Counter()  # by reason, for metrics
        self._holders: dict[str, StreamTicket] = {}  # token id -> the connection holding it

    @classmethod
    def from_config(
        cls,
        config: SecurityConfig,
        may_take_over: Callable[[str, str], bool] = lambda call_id, jti: False,
    ) -> StreamGuard | None:
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
        return cls(codec, store, may_take_over=may_take_over)

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
        predecessor = None
        if claim is Claim.IN_USE and self.may_take_over(token.call_id, token.jti):
            # The leg holding the token has gone quiet: this is Plivo's retry after a silent
            # drop, not a second party (``voicebridge.server.call_legs``).
            claim = self.store.take_over(token.jti)
            predecessor = self._holders.get(token.jti)
        if not claim.ok:
            self.refusals[claim.value] += 1
            log.warning(
                "stream_refused", reason=claim.value, call_id=token.call_id[:64], client=client
            )
            raise StreamRefused(claim.value)
        self.admitted += 1
        ticket = StreamTicket(token, self, predecessor)
        self._holders[token.jti] = ticket
        return ticket

    def closed(
        self, ticket: StreamTicket, *, end_reason: str | None, peer_code: int | None
    ) -> None:
        """A ticket's connection ended: hand the token back to the store (or the predecessor)."""
        jti = ticket.token.jti
        if self._holders.get(jti) is not ticket:
            return  # a retry took the token over; the hold is its now
        previous = ticket.predecessor
        if previous is not None and not previous.closed and not ticket.leg_admitted:
            self._holders[jti] = previous  # a retry that did not become the leg: hold restored
            return
        del self._holders[jti]
        over = peer_code == 1000 or (
            end_reason is not None
            and (end_reason in _FINAL_REASONS or end_reason.startswith("hangup:"))
        )
        if over and ticket.bound:
            self.store.finish(jti)
        else:
            self.store.release(jti)


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
        "token_signing": (
            "off"
            if not config.stream_tokens
            else "generated"
            if config.secret_generated
            else "environment"
        ),
        "stream_token_ttl_s": config.token_ttl_s,
    }


__all__ = [
    "Claim",
    "SecurityConfig",
    "SignatureGuard",
    "StreamGuard",
    "StreamRefused",
    "StreamTicket",
    "provide_stream_secret",
    "refuse_handshake",
    "security_summary",
    "signed_url",
]
