"""Structured logging set-up: console lines on a terminal, JSON lines otherwise.

One handler on the root logger renders every line of the process: structlog's events and the
standard library's records (uvicorn, httpx, grpc, asyncio, ...) go through the same processors
(``shared_processors``: level, logger name, time, the call's ids, secrets masked, fields bounded)
and the same renderer, so under ``json`` every line is one JSON object.

Every call's lines carry ``call_id`` and ``stream_id``: its logger is bound to them, and the call
binds them as context variables too (``bind_call``), so a library logging inside the call is
tagged the same way. One call's story comes out of a busy service's logs with a single filter.
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
        if isinstance(record.msg, dict):  # structlog's event, masked by its processors already
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        masked = bounded(self.redactor.text(message), MAX_MESSAGE_CHARS)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def add_pid(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: the process id, which tells the workers of ``serve --workers N``
    apart (they share one stderr)."""
    event["pid"] = os.getpid()  # the field is the logging process: name others otherwise
    return event


def shared_processors(redactor: Redactor, *, with_pid: bool) -> list[Any]:
    """What every line goes through, structlog's or the standard library's, before rendering."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,  # the call's ids (``bind_call``)
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if with_pid:
        processors.append(add_pid)
    processors += [
        structlog.processors.format_exc_info,
        redactor,  # after format_exc_info: a traceback can quote a secret too
        bound_fields,
    ]
    return processors


def configure_logging(
    fmt: LogFormat = "auto", level: str = "info", *, environ: Mapping[str, str] | None = None
) -> None:
    """Configure structlog and stdlib logging once per process (again replaces the last set-up).

    structlog hands its events to stdlib logging (``ProcessorFormatter.wrap_for_formatter``);
    one root handler renders them and every stdlib record alike. uvicorn's loggers propagate to
    it (their own handlers, if a ``log_config`` installed any, are removed). Both kinds of line
    mask secrets (``Redactor``), including the values of secret-named environment variables.
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
    shared = shared_processors(redactor, with_pid=use_json)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    _route_uvicorn_to_root()
    logging.captureWarnings(True)  # warnings.warn(...) as records of ``py.warnings``
    redacting = RedactingFilter(redactor)
    for other in root.handlers:  # e.g. a test's capture handler: masked all the same
        for old_filter in [f for f in other.filters if isinstance(f, RedactingFilter)]:
            other.removeFilter(old_filter)
        if other is not handler:
            other.addFilter(redacting)
    # Libraries that log every inference at INFO would drown the call logs.
    for noisy in ("faster_whisper", "piper"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


def _route_uvicorn_to_root() -> None:
    """uvicorn's lines go to our handler: a ``log_config`` (uvicorn's default one, say) gives
    its loggers handlers of their own and stops them propagating. ``uvicorn.access`` is left
    alone when it has no handler: uvicorn turns the access log off that way (``access_log``)."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        if logger.handlers:
            logger.handlers.clear()
            logger.propagate = True
        elif name != "uvicorn.access":
            logger.propagate = True


def bind_call(call_id: str, stream_id: str) -> None:
    """Tag every line logged from now on in this task, and in tasks and worker threads it
    starts, with the call's ids, whichever logger writes it (a library's stdlib logger too)."""
    structlog.contextvars.bind_contextvars(call_id=call_id, stream_id=stream_id)


def unbind_call() -> None:
    """The call is over: this task's later lines are not the call's."""
    structlog.contextvars.unbind_contextvars("call_id", "stream_id")


class StderrHandler(logging.StreamHandler):
    """The root handler: writes to whatever ``sys.stderr`` is now, not what it was at
    configuration time (test runners and daemonisers swap it; a handler holding the old, closed
    stream would fail)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always the current sys.stderr


def call_logger(call_id: str, stream_id: str) -> Any:
    """A logger bound to one call."""
    return structlog.get_logger("voicebridge.call").bind(call_id=call_id, stream_id=stream_id)
