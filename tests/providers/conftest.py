"""Shared set-up of the provider tests.

The wire fakes (``aws_fakes``, ``google_fakes``, ``openai_fakes``) are plain modules next to the
tests, and tests have no packages: this puts their folder on ``sys.path`` once, so a test module
imports them by name (``import aws_fakes as fakes``) and every test shares one copy of each.
It also offers the AWS tests their environment, the ``aws_env`` fixture (dummy credentials and
region, fresh clients): ``pytestmark = pytest.mark.usefixtures("aws_env")``, and the circuit
breaker tests the ``breakers`` fixture.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicebridge.clock import MonotonicClock
from voicebridge.runtime import resilience

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from aws_fakes import aws_env  # noqa: E402

__all__ = ["aws_env", "breakers"]


@pytest.fixture
def breakers() -> Iterator[None]:
    """Each test puts the process's breakers on its first call's clock; put them back."""
    resilience.breakers.reset()
    yield
    resilience.breakers.reset(clock=MonotonicClock())
