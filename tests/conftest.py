"""Shared fixtures: each test module may import helpers from here."""

from __future__ import annotations

import structlog


def pytest_configure(config: object) -> None:
    # Structured logs in tests, info and up: captured by pytest, shown for failing tests.
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.KeyValueRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(20),
    )
