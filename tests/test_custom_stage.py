"""The example custom stage, plugged in from YAML by import path and by entry point."""

from __future__ import annotations

from importlib import metadata

import pytest

from voicebridge.config import load_pipeline_text
from voicebridge.frames import Transcript
from voicebridge.testing.harness import run_stages

PIPELINE = """
name: redacting
stages:
  - type: decode
  - type: vad
  - type: voicebridge.testing:ScriptedStt
  - type: {type}
    params: {{min_digits: 4}}
  - type: rules
    params:
      rules:
        - regex: "\\\\*{{4,}}"
          reply: Card noted.
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
"""


def entry_point_installed() -> bool:
    names = {ep.name for ep in metadata.entry_points(group="voicebridge.stages")}
    return "redact_digits" in names


@pytest.mark.parametrize("stage_type", ["voicebridge_redact:RedactDigits", "redact_digits"])
async def test_custom_stage_from_yaml(stage_type: str) -> None:
    if stage_type == "redact_digits":
        assert entry_point_installed(), "pip install -e examples/custom_stage (README test command)"
    spec = load_pipeline_text(PIPELINE.format(type=stage_type))
    assert spec.warnings == []  # it declares what it consumes and produces
    assert [s.name for s in spec.stages][3:5] == [stage_type, "rules"]
    middle = spec.create_stages()[3:5]
    run = await run_stages(middle, [Transcript("my card is 4111 1111 1111 1111")])
    (redacted,) = run.of(Transcript)
    assert redacted.text == "my card is ****************"  # type: ignore[attr-defined]
    assert [f.text for f in run.of_text()] == ["Card noted."]


async def test_spoken_digits_are_redacted_and_short_numbers_kept() -> None:
    from voicebridge_redact import RedactDigits

    stage = RedactDigits(min_digits=4)
    assert stage.redact("pin one two three four please") == "pin **** please"
    assert stage.redact("table for 2 at 7") == "table for 2 at 7"
    assert stage.redact("call 555-0100") == "call *******"
