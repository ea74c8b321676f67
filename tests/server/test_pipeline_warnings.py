"""What ``voicebridge validate`` prints as warnings, the service logs at start-up, so an operator
who only reads the logs learns that a custom stage's place in the pipeline was not checked."""

from __future__ import annotations

from structlog.testing import capture_logs

from voicebridge.config import load_pipeline_text
from voicebridge.server.run import running_service

from .conftest import settings

UNDECLARED = """
name: with-undeclared
stages:
  - type: decode
  - type: vad
  - type: voicebridge.testing:ScriptedStt
  - type: voicebridge.runtime.stage:Stage   # a bare stage: declares no frames
  - type: rules
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""


async def test_pipeline_warnings_are_logged_before_the_service_is_ready() -> None:
    spec = load_pipeline_text(UNDECLARED)
    (warning,) = spec.warnings
    with capture_logs() as entries:
        async with running_service(settings(), spec):
            pass
    events = [e["event"] for e in entries]
    assert events.index("pipeline_warning") < events.index("service_ready")
    (logged,) = [e for e in entries if e["event"] == "pipeline_warning"]
    assert logged["log_level"] == "warning"
    assert logged["detail"] == str(warning)
    assert "voicebridge.runtime.stage:Stage` declares no frames" in logged["detail"]
