"""The parameters every speech-to-speech stage shares: the agent's instructions, its greeting, the
tools it may call (the ``llm`` stage's, hang-up and transfer included), how its replies are cut
into pieces, and how much heard history a reconnected session is given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from voicebridge.config.yaml_source import substitute_env
from voicebridge.runtime.stage import StageParams
from voicebridge.stages.dialogue.tools import ToolSpec

DEFAULT_INSTRUCTIONS = (
    "You are a friendly, efficient agent answering a phone call. Speak naturally and briefly: "
    "one to three short sentences at a time. The caller hears you over the phone, so never "
    "read out lists, markdown, emoji or URLs. If you are interrupted, stop and listen."
)
_MAX_INSTRUCTIONS = 32_000


class SpeechToSpeechParams(StageParams):
    """What a realtime voice model is told and may do, whatever the provider."""

    instructions: str = Field(DEFAULT_INSTRUCTIONS, description="the agent's instructions")
    instructions_file: str | None = Field(
        None,
        description="read the instructions from this file instead (${VAR} in it is filled "
        "from the environment); relative to the working directory",
    )
    greeting: str = Field(
        "", description="the model says this when the call starts (empty: it waits)"
    )
    tools: list[ToolSpec] = Field(default_factory=list, description="user-defined tools")
    hang_up: bool = Field(True, description="offer the built-in hang_up tool")
    hang_up_text: str = Field("Goodbye.", description="said on hang_up if the model said nothing")
    transfer_targets: dict[str, str] = Field(
        default_factory=dict,
        description="name -> number or SIP URI; offers transfer_call restricted to these",
    )
    transfer_text: str = Field(
        "Please hold while I transfer you.",
        description="said on transfer_call if the model said nothing",
    )
    max_tool_rounds: int = Field(
        3, ge=1, le=10, description="tool answers per caller turn before the model must speak"
    )
    dtmf: bool = Field(True, description="pass keypad digits to the model as '[keypad: 5]'")
    dtmf_wait_s: float = Field(
        1.0, ge=0, le=10, description="wait this long for more digits before replying ('#' ends)"
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

    @field_validator("transfer_targets")
    @classmethod
    def _targets(cls, value: dict[str, str]) -> dict[str, str]:
        for name, number in value.items():
            if not name.strip() or not str(number).strip():
                raise ValueError("transfer targets need a name and a number or SIP URI")
        return value

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

    @model_validator(mode="after")
    def _unique_tools(self) -> Any:
        names = [tool.name for tool in self.tools]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"tool names must be unique: {', '.join(duplicates)}")
        return self

    def instruction_text(self) -> str:
        """The instructions: the file's (with ``${VAR}`` filled in) when one is given."""
        if self.instructions_file is None:
            return self.instructions
        text = Path(self.instructions_file).read_text(encoding="utf-8")
        return substitute_env(text, os.environ).strip()
