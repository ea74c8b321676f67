"""Fixtures that start the real service on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicebridge.clock import StreamClock
from voicebridge.config import ServiceSettings, load_pipeline
from voicebridge.server.run import RunningService, running_service
from voicebridge.sim.lockstep import SessionWatch

ROOT = Path(__file__).resolve().parents[2]


def settings(**overrides: object) -> ServiceSettings:
    """Stream tokens off: these tests open /stream directly, as a tunnel tested by hand would;
    the token rules have their own tests (``tests/server/test_security_*``, ``tests/abuse``)."""
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "security": {"stream_token": "off"},
    }
    base.update(overrides)
    return ServiceSettings.model_validate(base)


@pytest.fixture
async def echo_service() -> AsyncIterator[RunningService]:
    """The echo pipeline on the call's own clock (StreamClock), so callers may run faster than
    real time in lockstep (``service.state.watch.lockstep``)."""
    spec = load_pipeline(ROOT / "pipelines" / "echo.yaml")
    watch = SessionWatch()
    async with running_service(
        settings(), spec, clock_factory=StreamClock, on_session=watch
    ) as service:
        service.app.state.watch = watch
        yield service
