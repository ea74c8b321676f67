"""Structured logging set-up: console lines on a terminal, JSON lines otherwise.

Every call's logger is bound to ``call_id`` and ``stream_id`` so one call's story can be pulled out
of a busy service's logs with a single filter.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Literal

import structlog

from voicebridge.observe.bounded import bounded

LogFormat = Literal["auto", "console", "json"]

MASK = "***"
# A key is secret when its last word is one of these, or it mentions signature/secret/password:
# ``auth_token``, ``stream_token`` and ``x-plivo-signature-v3`` are; ``max_tokens``,
# ``token_ttl_s`` and ``api_key_env`` (the NAME of a variable) are not.
_SECRET_WORDS = {"token", "secret", "password", "passwd", "authorization", "cookie", "apikey"}
_SECRET_PARTS = ("signature", "secret", "password", "api_key", "private_key", "access_key")
# ``token=…`` and friends inside URLs and messages; ``Bearer …`` and ``Basic …`` credentials.
_SECRET_QUERY = re.compile(
    r"(?i)((?:^|[?&;\s])(?:[a-z0-9_\-]*token|[a-z0-9_\-]*secret|signature|password|api_?key)=|"
    r"[?&](?:key|sig|access_?key)=)"  # URL-only names: Google's ?key=, S3's &sig=
    r"[^&\s\"'#,;]+"
)
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}")
# Environment variables whose values are secrets: PLIVO_AUTH_TOKEN, OPENAI_API_KEY,
# AWS_SECRET_ACCESS_KEY, AZURE_SPEECH_KEY, …; not GOOGLE_APPLICATION_CREDENTIALS (a path).
_SECRET_ENV = re.compile(r"(?i)(token|secret|password|passwd|apikey|_key)$")
_MIN_SECRET_CHARS = 8  # shorter values would mask ordinary words
# The last line of defence against a line that grows with its input: code bounds what came off
# the wire where it logs it (``voicebridge.observe.bounded``); this caps whatever was missed.
MAX_FIELD_CHARS = 2000
MAX_MESSAGE_CHARS = 4000  # a stdlib record (uvicorn's lines quote paths and queries)
MAX_TRACEBACK_CHARS = 20000


def secret_key(key: str) -> bool:
    """Whether a log field named ``key`` holds a secret."""
    name = key.lower().replace("-", "_")
    if name.endswith(("_env", "_var")):
        return False
    return name.rsplit("_", 1)[-1] in _SECRET_WORDS or any(p in name for p in _SECRET_PARTS)


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables named like secrets (``PLIVO_AUTH_TOKEN``,
    ``OPENAI_API_KEY``, ``VOICEBRIDGE_STREAM_SECRET`` …): the only place secrets live."""
    env = os.environ if environ is None else environ
    found = {
        v.strip()
        for k, v in env.items()
        if _SECRET_ENV.search(k) and len(v.strip()) >= _MIN_SECRET_CHARS
    }
    return sorted(found, key=len, reverse=True)


class Redactor:
    """Masks secrets in log events: values of secret-named keys, ``token=`` query parameters,
    bearer credentials, and any known secret value wherever it appears (an exception's text, a
    URL). A last line of defence: code should not log secrets in the first place."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted(
            {s for s in secrets if len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True
        )

    def text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if "=" in text:
            text = _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, text)
        return _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {MASK}", text)

    def value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if depth >= 3:
            return value
        if isinstance(value, Mapping):
            return {
                k: MASK if isinstance(k, str) and secret_key(k) and v else self.value(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self.value(v, depth + 1) for v in value)
        return value

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        for key, value in event.items():
            if secret_key(key) and value:
                event[key] = MASK
            elif isinstance(value, str | Mapping | list | tuple):
                event[key] = self.value(value)
        return event


def bound_fields(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: every field cut to ``MAX_FIELD_CHARS`` (its length kept)."""
    for key, value in event.items():
        if key == "exception":
            event[key] = bounded(value, MAX_TRACEBACK_CHARS)
        elif (isinstance(value, str) and len(value) > MAX_FIELD_CHARS) or isinstance(
            value, Mapping | list | tuple
        ):
            event[key] = bounded(value, MAX_FIELD_CHARS)
    return event


class RedactingFilter(logging.Filter):
    """The same masking for stdlib records (uvicorn logs each WebSocket's path and query), and a
    cap on their length."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        masked = bounded(self.redactor.text(message), MAX_MESSAGE_CHARS)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure_logging(
    fmt: LogFormat = "auto", level: str = "info", *, environ: Mapping[str, str] | None = None
) -> None:
    """Configure structlog (and stdlib logging, for uvicorn) once per process.

    Both mask secrets (``Redactor``), including the values of secret-named environment variables.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: expected debug, info, warning or error")
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    redactor = Redactor(environment_secrets(environ))
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,  # after format_exc_info: a traceback can quote a secret too
        bound_fields,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=numeric, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s"
    )
    redacting = RedactingFilter(redactor)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(redacting)
    # Libraries that log every inference at INFO would drown the call logs.
    for noisy in ("faster_whisper", "piper"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is now, not what it was at configuration time (test
    runners and daemonisers swap it; a logger holding the old, closed stream would crash)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def call_logger(call_id: str, stream_id: str) -> Any:
    """A logger bound to one call."""
    return structlog.get_logger("voicebridge.call").bind(call_id=call_id, stream_id=stream_id)
