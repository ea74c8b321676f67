"""Event subscribers named in a pipeline file: checked at load with the file's line, one fresh
instance per call that gets the call's events and is closed after the last one."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebridge.config import ConfigError, load_pipeline_text
from voicebridge.testing import CallHarness

MODULE = """
from pydantic import BaseModel


class Counter:
    instances = []

    class Params(BaseModel):
        label: str

    def __init__(self, params):
        self.params = params
        self.kinds = []
        self.closed = False
        Counter.instances.append(self)

    def on_event(self, event):
        self.kinds.append(event.kind)

    async def close(self):
        self.closed = True


class Plain:
    def __init__(self, path: str):
        self.path = path

    def on_event(self, event):
        pass


class NotOne:
    pass
"""

PIPELINE = """
name: watched
subscribers:
{subscribers}
stages:
  - type: decode
  - type: vad
  - type: echo
  - type: encode
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "vb_test_watchers.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "vb_test_watchers"


async def test_each_call_gets_its_own_subscriber_with_every_event(module: str) -> None:
    entry = f"  - type: {module}:Counter\n    params: {{label: audit}}"
    spec = load_pipeline_text(PIPELINE.format(subscribers=entry))
    for _ in range(2):
        async with CallHarness(spec) as call:
            await call.idle(0.1)
    import vb_test_watchers  # type: ignore[import-not-found]

    first, second = vb_test_watchers.Counter.instances
    assert first is not second and first.params.label == "audit"
    assert first.kinds[0] == "call_started" and first.kinds[-1] == "call_ended"
    assert first.closed and second.closed


def test_a_plain_class_takes_its_params_as_keywords(module: str) -> None:
    entry = f"  - type: {module}:Plain\n    params: {{path: /tmp/x}}"
    spec = load_pipeline_text(PIPELINE.format(subscribers=entry))
    (watcher,) = spec.create_subscribers()
    assert watcher.path == "/tmp/x"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("  - type: {m}:Missing", "has no attribute 'Missing'"),
        ("  - type: {m}:NotOne", "not a class with an on_event(event) method"),
        ("  - type: vb_surely_absent:X", "cannot import module 'vb_surely_absent'"),
        ("  - type: {m}:Counter\n    params: {{}}", "label: Field required"),
        ("  - type: {m}:Plain\n    params: {{path: x, where: y}}", "unexpected keyword argument"),
        ("  - type: {m}:Plain", "missing a required argument: 'path'"),
        ("  - type: {m}:Plain\n    extra: 1", "unknown key(s) extra"),
        ("  - nope", "a subscriber must be a mapping with a 'type'"),
    ],
)
def test_a_bad_subscriber_fails_at_load_with_its_line(
    module: str, entry: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_pipeline_text(PIPELINE.format(subscribers=entry.format(m=module)), "p.yaml")
    text = str(caught.value)
    assert message in text and "subscribers[0]" in text and "p.yaml:4" in text
