"""The scenario file: a pipeline, caller turns and expectations, validated like a pipeline file
(every problem reported with its file and line) so a typo fails before any call is placed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from voicebridge.config.errors import ConfigError, ConfigIssue
from voicebridge.config.yaml_source import load_yaml_file, validation_issues


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


class TurnExpect(_Strict):
    """What must be true of the agent's answer to one caller turn."""

    reply_contains: str | None = None  # case-insensitive, in what the caller heard
    reply_matches: str | None = None  # a regex searched (case-insensitive) in what was heard
    reply_within_ms: int | None = Field(default=None, gt=0)  # caller's end of speech -> audio
    interrupted: bool | None = None  # the caller cut this reply off (or did not)

    _check_regex = field_validator("reply_matches")(_regex)


class Turn(_Strict):
    """One thing the caller does: speak text (offline voice), play a WAV, press keypad digits,
    or make a speech-like sound of some length (for pipelines whose transcriber is scripted)."""

    say: str | None = Field(default=None, min_length=1, max_length=2000)
    wav: str | None = None
    sound_ms: int | None = Field(default=None, gt=0, le=60_000)
    dtmf: str | None = Field(default=None, pattern=r"^[0-9*#A-D]{1,40}$")
    pause_ms: int = Field(default=0, ge=0, le=60_000)  # silence after the turn's audio
    # Barge in: start this turn this long after the agent's speech before it (the greeting, for
    # the first turn) began playing; null waits for it to end. Unset: the scenario's default.
    interrupt_after_ms: int | None = Field(default=None, ge=0, le=60_000)
    expect: TurnExpect = TurnExpect()

    @model_validator(mode="after")
    def _one_kind(self) -> Turn:
        kinds = ("say", "wav", "dtmf", "sound_ms")
        given = [k for k in kinds if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a turn needs exactly one of {', '.join(kinds)} (got {given or 'none'})"
            )
        if self.dtmf is not None and self.pause_ms:
            raise ValueError("pause_ms is for spoken turns; a dtmf turn has a gap after each key")
        return self


class JudgeSpec(_Strict):
    """A model that grades the call's transcript against ``criteria`` (any OpenAI-compatible
    chat endpoint); its verdict passes or fails the scenario, its reasons go in the report."""

    criteria: list[str] = Field(min_length=1, max_length=50)
    base_url: str = Field(min_length=1)  # e.g. https://api.openai.com/v1
    model: str = Field(min_length=1)
    api_key_env: str | None = "OPENAI_API_KEY"  # None: a local server without a key
    timeout_s: float = Field(default=60.0, gt=0)


class PersonaSpec(_Strict):
    """A caller played by a model (any OpenAI-compatible chat endpoint): after the scripted
    turns, it hears each reply and says its next line, up to ``max_turns`` lines."""

    prompt: str = Field(min_length=1, max_length=20_000)  # who the caller is and what they want
    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key_env: str | None = "OPENAI_API_KEY"  # None: a local server without a key
    max_turns: int = Field(default=6, ge=1, le=50)
    timeout_s: float = Field(default=60.0, gt=0)


class CallExpect(_Strict):
    """What must be true of the whole call."""

    heard: list[str] | None = None  # the agent's lines as the caller heard them, in order
    actions: list[Literal["hangup", "transfer"]] | None = None  # requested, in order
    max_dead_air_s: float | None = Field(default=None, gt=0)
    ended_by: Literal["caller", "agent"] | None = None
    max_latency_ms: int | None = Field(default=None, gt=0)  # every answered turn
    judge: JudgeSpec | None = None


class Scenario(_Strict):
    """A whole scenario; ``pipeline`` and ``wav`` paths are relative to the scenario file."""

    name: str = Field(default="", max_length=200)
    description: str = ""
    pipeline: str
    codec: Literal["l16", "mulaw"] = "l16"
    rate: Literal[8000, 16000] = 16000
    realtime: bool = False
    gap_ms: int = Field(default=800, gt=0)  # agent silence that ends its reply
    reply_timeout_ms: int = Field(default=15_000, gt=0)
    # The default of every turn but the first (which answers the greeting): barge in that long
    # into the reply before it; a turn's own ``interrupt_after_ms`` (even null) replaces it.
    interrupt_after_ms: int | None = Field(default=None, ge=0, le=60_000)
    turns: list[Turn] = Field(default=[], max_length=200)
    persona: PersonaSpec | None = None
    expect: CallExpect = CallExpect()

    _source: str = PrivateAttr(default="")  # the file it was read from (set by the loader)

    @property
    def source(self) -> str:
        return self._source

    @model_validator(mode="after")
    def _something_to_say(self) -> Scenario:
        if not self.turns and self.persona is None:
            raise ValueError("a scenario needs turns, a persona, or both")
        return self

    @model_validator(mode="after")
    def _format(self) -> Scenario:
        if self.codec == "mulaw" and self.rate != 8000:
            raise ValueError("codec mulaw streams at 8000 Hz only (set rate: 8000)")
        return self

    def barge_in_ms(self, index: int) -> int | None:
        """When turn ``index`` starts into the agent's speech before it (None: after it)."""
        turn = self.turns[index]
        if "interrupt_after_ms" in turn.model_fields_set:
            return turn.interrupt_after_ms
        return self.interrupt_after_ms if index else None

    def resolve(self, relative: str) -> Path:
        base = Path(self.source).parent if self.source else Path(".")
        path = Path(relative)
        return path if path.is_absolute() else base / path


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file; raises ConfigError with every problem, by line."""
    doc = load_yaml_file(path)
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.issue((), "a scenario file is a mapping (pipeline:, turns:, ...)")])
    data = dict(doc.data)
    data.setdefault("name", Path(path).stem)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([*doc.issues, *validation_issues(doc, exc, (), Scenario)]) from None
    doc.raise_for_issues()
    scenario._source = str(path)
    issues: list[ConfigIssue] = []
    if not scenario.resolve(scenario.pipeline).is_file():
        issues.append(doc.issue(("pipeline",), f"pipeline file not found: {scenario.pipeline}"))
    for i, turn in enumerate(scenario.turns):
        if turn.wav is not None and not scenario.resolve(turn.wav).is_file():
            issues.append(doc.issue(("turns", i, "wav"), f"WAV file not found: {turn.wav}"))
    if issues:
        raise ConfigError(issues)
    return scenario
