"""Structured logging set-up: console lines on a terminal, JSON lines otherwise.

Every call's logger is bound to ``call_id`` and ``stream_id`` so one call's story can be pulled out
of a busy service's logs with a single filter.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

LogFormat = Literal["auto", "console", "json"]


def configure_logging(fmt: LogFormat = "auto", level: str = "info") -> None:
    """Configure structlog (and stdlib logging, for uvicorn) once per process."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: expected debug, info, warning or error")
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
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
