"""``configure_logging``: structlog's events and stdlib records become the same kind of line,
with the logger's name, the call's ids and secrets masked, whoever configured uvicorn before."""

from __future__ import annotations

import json
import logging
import logging.config
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from uvicorn.config import LOGGING_CONFIG

from voicebridge.observe.logs import bind_call, configure_logging, unbind_call

SECRET = "s3cr3t-value-0123"


@pytest.fixture(autouse=True)
def _uvicorn_loggers() -> Iterator[None]:
    """Put uvicorn's loggers back as they were (dictConfig below gives them handlers)."""
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in names}
    yield
    for name, (handlers, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(logging.NOTSET)


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_stdlib_and_structlog_lines_are_one_json_format(capsys: pytest.CaptureFixture[str]) -> None:
    logging.config.dictConfig(LOGGING_CONFIG)  # uvicorn's own handlers and formatters
    configure_logging("json", "info", environ={"PROVIDER_API_KEY": SECRET})
    structlog.get_logger("voicebridge.test").info("before_call", url="/stream?token=abc.def")
    bind_call("call-1", "stream-1")
    try:
        logging.getLogger("uvicorn.error").info("inside %s", "the call")
        try:
            raise RuntimeError(f"rejected key {SECRET}")
        except RuntimeError:
            logging.getLogger("botocore.endpoint").exception("request failed")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            logging.captureWarnings(True)
            warnings.warn("old parameter", DeprecationWarning, stacklevel=1)
    finally:
        unbind_call()
    logging.getLogger("uvicorn.error").debug("below the level")
    structlog.get_logger("voicebridge.test").info("after_call")
    out = capsys.readouterr()
    assert out.out == ""
    got = lines(out.err)  # every line JSON: uvicorn's formatter did not print its own
    assert [(r["logger"], r["event"].splitlines()[0]) for r in got] == [
        ("voicebridge.test", "before_call"),
        ("uvicorn.error", "inside the call"),
        ("botocore.endpoint", "request failed"),
        ("py.warnings", got[3]["event"].splitlines()[0]),
        ("voicebridge.test", "after_call"),
    ]
    assert "DeprecationWarning: old parameter" in got[3]["event"]
    assert got[0]["url"] == "/stream?token=***"
    for record in got:
        assert {"level", "timestamp", "pid"} <= record.keys()
        inside = record["event"] not in ("before_call", "after_call")
        assert (record.get("call_id"), record.get("stream_id")) == (
            ("call-1", "stream-1") if inside else (None, None)
        )
    failed = got[2]
    assert failed["level"] == "error" and "RuntimeError: rejected key ***" in failed["exception"]
    assert SECRET not in out.err


def test_console_format_names_the_logger(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("console", "info")
    logging.getLogger("httpx").info("HTTP Request: GET /x")
    structlog.get_logger("voicebridge.test").info("ready")
    err = capsys.readouterr().err
    assert "[httpx]" in err and "[voicebridge.test]" in err and "{" not in err
