"""Shared fixtures: each test module may import helpers from here."""

from __future__ import annotations

import structlog


def pytest_configure(config: object) -> None:
    # Quiet, structured logs in tests; warnings still show on failure through capture.
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.KeyValueRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(30),
    )
