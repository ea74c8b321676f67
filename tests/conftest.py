"""Shared test set-up: structured logs at info and up, restored after every test."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
import structlog

from voicebridge.observe.logs import StderrHandler
from voicebridge.testing.redis_server import REDIS_SERVER, RedisServer, redis_available


def _configure() -> None:
    structlog.reset_defaults()  # configure() alone keeps a logger factory set by the last test
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)  # configure_logging's, from a test that ran the CLI
    logging.captureWarnings(False)
    root.setLevel(logging.WARNING)  # the default; configure_logging sets the level asked for
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.KeyValueRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=False,
    )


def pytest_configure(config: object) -> None:
    _configure()


#: Set by ``.ci/run``: a test that would skip for want of something on the machine (redis-server,
#: Chromium, the Pipecat environment) fails instead, so CI cannot pass while silently running less.
REQUIRE_ALL = os.environ.get("VOICEBRIDGE_REQUIRE_ALL_TESTS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but VOICEBRIDGE_REQUIRE_ALL_TESTS=1 wants every test: {reason}"


@pytest.fixture(autouse=True)
def _structlog_config() -> Iterator[None]:
    """A test that runs the CLI reconfigures logging for the process; undo that."""
    yield
    _configure()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for one test (skipped where none is
    installed; ``.ci/run`` installs it)."""
    if not redis_available():
        pytest.skip(f"redis-server is not installed ({REDIS_SERVER}); .ci/run installs it")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
