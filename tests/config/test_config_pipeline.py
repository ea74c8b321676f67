"""Pipeline files: valid loading, both parameter styles, and every error kind with its line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from pydantic import BaseModel, Field

from voicebridge.config import (
    ConfigError,
    ConfigIssue,
    PipelineSpec,
    StageSpec,
    load_pipeline,
    load_pipeline_text,
)
from voicebridge.runtime import registry
from voicebridge.runtime.registry import StageTypeError
from voicebridge.runtime.stage import Stage, StageParams

# --- toy stages --------------------------------------------------------------------------------


class ToyDecode(Stage):
    type_name = "decode"


class ToyVad(Stage):
    type_name = "vad"

    class Params(StageParams):
        aggressiveness: int = Field(default=2, ge=0, le=3)
        min_speech_ms: int = 100


class Phrase(BaseModel):
    text: str
    weight: float = 1.0


class ToyStt(Stage):
    type_name = "stt"
    preloaded: ClassVar[list[StageParams]] = []

    class Params(StageParams):
        model: str
        beam_size: int = 5
        language: str | None = None
        mode: Literal["fast", "exact"] = "fast"
        phrases: list[Phrase] = Field(default_factory=list)

    @classmethod
    async def preload(cls, params: StageParams) -> None:
        cls.preloaded.append(params)


class ToyEcho(Stage):
    type_name = "echo"

    class Params(StageParams):
        gain_db: float = 0.0


TOYS: dict[str, type[Stage]] = {"decode": ToyDecode, "vad": ToyVad, "stt": ToyStt, "echo": ToyEcho}


def toy_resolver(name: str) -> type[Stage]:
    try:
        return TOYS[name]
    except KeyError:
        raise StageTypeError(f"unknown stage type {name!r}") from None


def load(text: str, **kwargs: object) -> PipelineSpec:
    return load_pipeline_text(text, "p.yaml", resolver=toy_resolver, environ={}, **kwargs)  # type: ignore[arg-type]


def issues_of(text: str, environ: dict[str, str] | None = None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load_pipeline_text(text, "p.yaml", resolver=toy_resolver, environ=environ or {})
    return info.value.issues


def only(text: str, environ: dict[str, str] | None = None) -> ConfigIssue:
    issues = issues_of(text, environ)
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


# --- valid files -------------------------------------------------------------------------------

VALID = """\
name: echo
description: Plays each caller utterance back.
session:
  barge_in: {guard_ms: 250}
  chunk_ms: 100
stages:
  - type: decode
  - type: vad
    params: {aggressiveness: 3}
  - type: vad
    name: vad_loose
    aggressiveness: 0
  - type: echo
"""


def test_valid_pipeline() -> None:
    spec = load(VALID)
    assert spec.name == "echo"
    assert spec.description == "Plays each caller utterance back."
    assert spec.path is None
    assert spec.session.barge_in.guard_ms == 250
    assert spec.session.chunk_ms == 100
    assert [(s.type, s.name, s.line) for s in spec.stages] == [
        ("decode", "decode", 7),
        ("vad", "vad", 8),
        ("vad", "vad_loose", 10),
        ("echo", "echo", 13),
    ]
    assert all(isinstance(s, StageSpec) for s in spec.stages)
    assert spec.stages[1].cls is ToyVad
    assert spec.stages[1].params == ToyVad.Params(aggressiveness=3)
    assert spec.stages[2].params == ToyVad.Params(aggressiveness=0)
    assert spec.stages[3].params == ToyEcho.Params()


def test_create_gives_fresh_named_instances() -> None:
    spec = load(VALID)
    first, second = spec.create_stages(), spec.create_stages()
    assert [type(s) for s in first] == [ToyDecode, ToyVad, ToyVad, ToyEcho]
    assert all(a is not b for a, b in zip(first, second, strict=True))
    assert [s.name for s in first] == ["decode", "vad", "vad_loose", "echo"]
    assert first[2].params.aggressiveness == 0
    assert spec.stages[0].create() is not spec.stages[0].create()


def test_defaults_when_optional_sections_are_absent() -> None:
    spec = load("stages:\n  - type: decode\n    params:\n")
    assert spec.name == "pipeline"
    assert spec.description == ""
    assert spec.session.barge_in.guard_ms == 200
    assert spec.stages[0].params == StageParams()


def test_inline_and_params_styles_are_equivalent() -> None:
    inline = load("stages:\n  - type: stt\n    model: base\n    beam_size: 2\n")
    nested = load("stages:\n  - type: stt\n    params: {model: base, beam_size: 2}\n")
    assert inline.stages[0].params == nested.stages[0].params
    assert inline.stages[0].params == ToyStt.Params(model="base", beam_size=2)


def test_env_values_are_coerced_by_the_params_model() -> None:
    text = "stages:\n  - type: stt\n    model: ${MODEL:-tiny}\n    beam_size: ${BEAM}\n"
    spec = load_pipeline_text(text, resolver=toy_resolver, environ={"BEAM": "7"})
    assert spec.stages[0].params == ToyStt.Params(model="tiny", beam_size=7)


def test_type_from_environment() -> None:
    text = "stages:\n  - type: ${DIALOGUE:-echo}\n"
    assert load(text).stages[0].cls is ToyEcho
    spec = load_pipeline_text(text, resolver=toy_resolver, environ={"DIALOGUE": "vad"})
    assert spec.stages[0].cls is ToyVad


def test_preload_runs_per_stage() -> None:
    ToyStt.preloaded.clear()
    spec = load("stages:\n  - type: stt\n    model: a\n  - {type: stt, name: b, model: b}\n")
    asyncio.run(spec.preload())
    assert [p.model for p in ToyStt.preloaded] == ["a", "b"]  # type: ignore[attr-defined]


def test_load_pipeline_from_file(tmp_path: Path) -> None:
    path = tmp_path / "my_pipe.yaml"
    path.write_text("stages:\n  - type: decode\n")
    spec = load_pipeline(path, resolver=toy_resolver, environ={})
    assert spec.name == "my_pipe"
    assert spec.path == path


def test_file_errors_name_the_file_as_given(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("stages:\n  - type: nope\n")
    with pytest.raises(ConfigError) as info:
        load_pipeline(str(path), resolver=toy_resolver, environ={})
    assert str(info.value).startswith(f"{path}:2:5: stages[0].type: unknown stage type 'nope'")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_pipeline(tmp_path / "missing.yaml", resolver=toy_resolver)
    assert len(info.value.issues) == 1
    assert info.value.issues[0].message == "file not found"


def test_size_limit_is_passed_through(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("stages:\n  - type: decode\n" + "# padding\n" * 50)
    with pytest.raises(ConfigError, match="limit of 100 bytes"):
        load_pipeline(path, resolver=toy_resolver, max_bytes=100)


def test_default_resolver_uses_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "BUILTIN_STAGES", {"vad": f"{__name__}:ToyVad"})
    monkeypatch.setattr(registry, "BUILTIN_EXTRAS", {"vad": ""})
    monkeypatch.setattr(registry, "_entry_points", dict)
    spec = load_pipeline_text("stages:\n  - type: vad\n  - type: " + __name__ + ":ToyEcho\n")
    assert [s.cls for s in spec.stages] == [ToyVad, ToyEcho]
    assert spec.stages[1].name == f"{__name__}:ToyEcho"
    with pytest.raises(ConfigError) as info:
        load_pipeline_text("stages:\n  - type: vda\n")
    assert "did you mean 'vad'?" in str(info.value)


# --- one error of each kind, with its line -------------------------------------------------------


def test_syntax_error() -> None:
    issue = only("stages:\n  - type: decode\n  - type: [vad\n")
    assert issue.line == 4 or issue.line == 3
    assert issue.path == ""


def test_duplicate_yaml_key() -> None:
    issue = only("stages:\n  - type: vad\n    type: echo\n")
    assert (issue.line, "duplicate key" in issue.message) == (3, True)


@pytest.mark.parametrize(
    ("text", "line", "path", "fragment"),
    [
        ("", None, "", "the file is empty"),
        ("- type: decode\n", 1, "", "must be a mapping with a 'stages' list, not a list"),
        ("just text\n", 1, "", "not a string"),
        ("name: x\n", 1, "", "missing required key 'stages'"),
        ("stages: []\n", 1, "stages", "at least one stage"),
        ("name: x\nstages:\n", 2, "stages", "must be a list of stages, not empty"),
        ("stages: {type: decode}\n", 1, "stages", "not a mapping"),
        ("stages:\n  - decode\n", 2, "stages[0]", "write '- type: decode'"),
        ("stages:\n  - [decode]\n", 2, "stages[0]", "not a list"),
        ("stages:\n  - name: x\n", 2, "stages[0]", "missing required key 'type'"),
        ("stages:\n  - type: 5\n", 2, "stages[0].type", "non-empty string"),
        ("stages:\n  - type: ''\n", 2, "stages[0].type", "non-empty string"),
        ("stages:\n  - type: nope\n", 2, "stages[0].type", "unknown stage type 'nope'"),
        ("stages:\n  - type: vad\n    name: [a]\n", 3, "stages[0].name", "non-empty string"),
        ("name: [x]\nstages:\n  - type: vad\n", 1, "name", "must be a string, not a list"),
        ("description: 3\nstages:\n  - type: vad\n", 1, "description", "not an integer"),
        ("stages:\n  - type: vad\n    params: 3\n", 3, "stages[0].params", "not an integer"),
        ("stages:\n  - type: vad\n    params: [1]\n", 3, "stages[0].params", "a mapping"),
        ("session: 5\nstages:\n  - type: vad\n", 1, "session", "must be a mapping"),
        (
            "stagse:\n  - type: vad\nstages:\n  - type: vad\n",
            1,
            "stagse",
            "unknown key 'stagse' (did you mean 'stages'?); allowed: name, description,",
        ),
    ],
)
def test_structural_errors(text: str, line: int | None, path: str, fragment: str) -> None:
    issue = only(text)
    assert (issue.line, issue.path) == (line, path), str(issue)
    assert fragment in issue.message, str(issue)
    assert issue.file == "p.yaml"


def test_both_param_styles_in_one_item() -> None:
    issue = only("stages:\n  - type: vad\n    params: {aggressiveness: 1}\n    min_speech_ms: 5\n")
    assert (issue.line, issue.path) == (4, "stages[0].min_speech_ms")
    assert "both under 'params' and inline ('min_speech_ms')" in issue.message


def test_duplicate_default_names() -> None:
    issue = only("stages:\n  - type: vad\n  - type: echo\n  - type: vad\n")
    assert (issue.line, issue.path) == (4, "stages[2].type")
    assert "duplicate stage name 'vad' (also stages[0], line 2)" in issue.message


def test_duplicate_explicit_names() -> None:
    issue = only("stages:\n  - {type: vad, name: a}\n  - type: echo\n    name: a\n")
    assert (issue.line, issue.path) == (4, "stages[1].name")


def test_param_wrong_type_in_params_mapping() -> None:
    text = "stages:\n  - type: stt\n    params:\n      model: base\n      beam_size: five\n"
    issue = only(text)
    assert str(issue) == (
        "p.yaml:5:7: stages[0].params.beam_size: Input should be a valid integer, "
        "unable to parse string as an integer (got 'five')"
    )


def test_param_wrong_type_inline() -> None:
    issue = only("stages:\n  - type: stt\n    model: base\n    beam_size: five\n")
    assert (issue.line, issue.column, issue.path) == (4, 5, "stages[0].beam_size")
    assert "(got 'five')" in issue.message


def test_param_constraint() -> None:
    issue = only("stages:\n  - type: vad\n    aggressiveness: 7\n")
    assert (issue.line, issue.path) == (3, "stages[0].aggressiveness")
    assert "less than or equal to 3 (got 7)" in issue.message


def test_unknown_param_suggests_a_name() -> None:
    issue = only("stages:\n  - type: vad\n    params:\n      agressiveness: 1\n")
    assert (issue.line, issue.path) == (4, "stages[0].params.agressiveness")
    assert "unknown parameter 'agressiveness' (did you mean 'aggressiveness'?)" in issue.message
    assert "known: aggressiveness, min_speech_ms" in issue.message


def test_misspelt_params_key_inline_suggests_params() -> None:
    issue = only("stages:\n  - type: vad\n    parms: {aggressiveness: 1}\n")
    assert issue.path == "stages[0].parms"
    assert "did you mean 'params'?" in issue.message


def test_missing_required_param_points_at_the_stage() -> None:
    issue = only("stages:\n  - type: decode\n  - type: stt\n    beam_size: 3\n")
    assert (issue.line, issue.path) == (3, "stages[1].model")
    assert "missing required parameter 'model'" in issue.message


def test_nested_param_error_points_into_the_list() -> None:
    text = (
        "stages:\n"
        "  - type: stt\n"
        "    model: base\n"
        "    phrases:\n"
        "      - text: hello\n"
        "      - text: world\n"
        "        weight: heavy\n"
    )
    issue = only(text)
    assert (issue.line, issue.path) == (7, "stages[0].phrases[1].weight")


def test_literal_param() -> None:
    issue = only("stages:\n  - type: stt\n    model: m\n    mode: slow\n")
    assert issue.line == 4
    assert "'fast' or 'exact' (got 'slow')" in issue.message


def test_session_errors_have_lines() -> None:
    text = (
        "session:\n"
        "  chunk_ms: 5\n"
        "  barge_in:\n"
        "    guard_ms: soon\n"
        "    gaurd_ms: 100\n"
        "stages:\n"
        "  - type: vad\n"
    )
    issues = issues_of(text)
    assert [(i.line, i.path) for i in issues] == [
        (2, "session.chunk_ms"),
        (4, "session.barge_in.guard_ms"),
        (5, "session.barge_in.gaurd_ms"),
    ]
    assert "did you mean 'guard_ms'?" in issues[2].message


def test_missing_env_var_is_reported_once() -> None:
    text = "stages:\n  - type: stt\n    model: base\n    beam_size: ${BEAM}\n  - type: ${KIND}\n"
    issues = issues_of(text)
    assert [(i.line, i.path) for i in issues] == [(4, "stages[0].beam_size"), (5, "stages[1].type")]
    assert all("is not set" in i.message for i in issues)


# --- many problems, one report -----------------------------------------------------------------

MANY = """\
name: broken
colour: blue
session:
  chunk_ms: tiny
stages:
  - type: decode
  - type: vda
  - type: stt
    params:
      beam_size: five
      temprature: 0
  - not a mapping
  - type: echo
    name: decode
  - type: vad
    params: {aggressiveness: 1}
    min_speech_ms: 10
  - type: echo
    gain_db: loud
"""


def test_every_issue_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load(MANY)
    found = [(i.line, i.path) for i in info.value.issues]
    assert found == [
        (2, "colour"),
        (4, "session.chunk_ms"),
        (7, "stages[1].type"),
        (9, "stages[2].params.model"),
        (10, "stages[2].params.beam_size"),
        (11, "stages[2].params.temprature"),
        (12, "stages[3]"),
        (14, "stages[4].name"),
        (17, "stages[5].min_speech_ms"),
        (19, "stages[6].gain_db"),
    ]
    lines = str(info.value).splitlines()
    assert len(lines) == len(found)
    assert lines[0].startswith("p.yaml:2:1: colour: unknown key 'colour'")
    assert lines[-1].startswith("p.yaml:19:5: stages[6].gain_db: Input should be a valid number")
