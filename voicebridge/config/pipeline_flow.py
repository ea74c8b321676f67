"""The order check of a loaded pipeline, as config issues at the offending stage's line.

Each stage class declares the frames it needs and makes (``voicebridge.runtime.flow``); this
module walks the file's stages with those declarations and reports, for instance, a speaker
placed before the dialogue or a pipeline without an encoder, which would otherwise load fine and
give silent calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from voicebridge.config.errors import ConfigIssue
from voicebridge.config.yaml_source import YamlDocument
from voicebridge.runtime.flow_check import FlowStep, check_flow

if TYPE_CHECKING:
    from voicebridge.runtime.stage import Stage, StageParams


class LoadedStage(Protocol):
    """What the check needs of a validated stage (a ``StageSpec``)."""

    name: str
    params: StageParams

    @property
    def cls(self) -> type[Stage]: ...


def flow_issues(
    doc: YamlDocument, stages: Sequence[LoadedStage]
) -> tuple[list[ConfigIssue], list[ConfigIssue]]:
    """(errors, warnings) about the order of ``stages``, each at its stage's line."""
    steps = []
    for index, stage in enumerate(stages):
        line = doc.line_of(("stages", index))
        steps.append(
            FlowStep(
                name=stage.name,
                role=stage.cls.role,
                flow=stage.cls.frame_flow(stage.params),
                where=f"line {line}" if line is not None else f"stages[{index}]",
            )
        )
    errors: list[ConfigIssue] = []
    warnings: list[ConfigIssue] = []
    for problem in check_flow(steps):
        path = ("stages",) if problem.index is None else ("stages", problem.index)
        issue = doc.issue(path, problem.message)
        if problem.fatal:
            errors.append(issue)
        else:
            issue.warning = True
            warnings.append(issue)
    return errors, sorted(warnings, key=ConfigIssue.sort_key)
