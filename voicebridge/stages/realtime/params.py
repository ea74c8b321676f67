"""The parameters every speech-to-speech stage shares: the agent's instructions, its greeting, the
tools it may call (the ``llm`` stage's, hang-up and transfer included), how its replies are cut
into pieces, and how much heard history a reconnected session is given.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator

from voicebridge.config.yaml_source import substitute_env
from voicebridge.stages.dialogue.toolbox import ToolParams

DEFAULT_INSTRUCTIONS = (
    "You are a friendly, efficient agent answering a phone call. Speak naturally and briefly: "
    "one to three short sentences at a time. The caller hears you over the phone, so never "
    "read out lists, markdown, emoji or URLs. If you are interrupted, stop and listen."
)
_MAX_INSTRUCTIONS = 32_000


class SpeechToSpeechParams(ToolParams):
    """What a realtime voice model is told and may do (its tools and keypad are the ``llm``
    stage's: :class:`~voicebridge.stages.dialogue.toolbox.ToolParams`), whatever the provider."""

    instructions: str = Field(DEFAULT_INSTRUCTIONS, description="the agent's instructions")
    instructions_file: str | None = Field(
        None,
        description="read the instructions from this file instead (${VAR} in it is filled "
        "from the environment); relative to the working directory",
    )
    greeting: str = Field(
        "", description="the model says this when the call starts (empty: it waits)"
    )
    piece_ms: int = Field(
        500,
        ge=40,
        le=5000,
        description="reply audio per acknowledged piece (the first goes out at once)",
    )
    replay_history: int = Field(
        40, ge=0, le=1000, description="history entries replayed to a re-established session"
    )

    @field_validator("instructions_file")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        path = Path(value)
        if not path.is_file():
            raise ValueError(f"no such file: {value} (relative paths start at {Path.cwd()})")
        if path.stat().st_size > _MAX_INSTRUCTIONS:
            raise ValueError(f"{value} is over {_MAX_INSTRUCTIONS} bytes")
        substitute_env(path.read_text(encoding="utf-8"), os.environ)  # an unset ${VAR} fails now
        return value

    def instruction_text(self) -> str:
        """The instructions: the file's (with ``${VAR}`` filled in) when one is given."""
        if self.instructions_file is None:
            return self.instructions
        text = Path(self.instructions_file).read_text(encoding="utf-8")
        return substitute_env(text, os.environ).strip()
