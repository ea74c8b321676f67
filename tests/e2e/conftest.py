"""Fixtures that start the real service on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicebridge.config import ServiceSettings, load_pipeline
from voicebridge.server.run import RunningService, running_service

ROOT = Path(__file__).resolve().parents[2]


def settings(**overrides: object) -> ServiceSettings:
    base: dict[str, object] = {"host": "127.0.0.1", "port": 0}
    base.update(overrides)
    return ServiceSettings.model_validate(base)


@pytest.fixture
async def echo_service() -> AsyncIterator[RunningService]:
    spec = load_pipeline(ROOT / "pipelines" / "echo.yaml")
    async with running_service(settings(), spec) as service:
        yield service
