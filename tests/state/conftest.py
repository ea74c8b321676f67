"""A real redis-server per test module (skipped only when redis-server is not installed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from voicebridge.testing.redis_server import REDIS_SERVER, RedisServer, redis_available


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if not redis_available():
        pytest.skip(f"redis-server is not installed ({REDIS_SERVER}); .ci/run installs it")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
