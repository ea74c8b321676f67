"""Walking a pipeline's declared frame flows: is every stage given what it needs, in time?

Pure logic over ``FlowStep``s (a stage's name, role and ``StageFlow``), so it knows nothing of
YAML: the config loader turns each ``FlowProblem`` into an issue at the stage's line. Problems
are errors, except where a stage that declares nothing could explain them: then they are
warnings, since that stage may make or swallow anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from voicebridge.frames import Frame
from voicebridge.runtime.flow import (
    CALLER_HEARS,
    ROLE_FLOWS,
    SESSION_FRAMES,
    UNHEARD,
    StageFlow,
    frame_role,
)

DECLARE_HINT = (
    "declare what it needs and makes on the class, for example "
    "`consumes = (Transcript,)` and `produces = (Transcript,)`, or a built-in `role` "
    "(see docs/custom-stages.md)"
)


@dataclass(frozen=True)
class FlowStep:
    """One stage as the check sees it; ``where`` points a message at it ("line 12")."""

    name: str
    role: str
    flow: StageFlow | None
    where: str = ""

    @property
    def label(self) -> str:
        """How a message names the stage it is about: "`piper` (tts)"."""
        return self._label([])

    @property
    def label_at(self) -> str:
        """How a message names another stage: "`rules` (dialogue, line 20)"."""
        return self._label([self.where] if self.where else [])

    def _label(self, extra: list[str]) -> str:
        notes = [self.role] if self.role in ROLE_FLOWS and self.role != self.name else []
        notes += extra
        return f"`{self.name}` ({', '.join(notes)})" if notes else f"`{self.name}`"


@dataclass(frozen=True)
class FlowProblem:
    """What is wrong, and at which stage (None: the pipeline as a whole)."""

    index: int | None
    message: str
    fatal: bool


def _makes(flow: StageFlow | None, kind: type[Frame]) -> bool:
    return flow is not None and any(issubclass(made, kind) for made in flow.produces)


class _Walk:
    """The frames present after each stage, and who made or dropped them."""

    def __init__(self, steps: Sequence[FlowStep]) -> None:
        self.steps = steps
        self.made: dict[type[Frame], int | None] = dict.fromkeys(SESSION_FRAMES)
        self.dropped: dict[type[Frame], int] = {}
        self.blind: list[int] = []  # stages that declare nothing, so may do anything
        self.problems: list[FlowProblem] = []
        self.late: set[tuple[int, type[Frame]]] = set()  # (stage, frame) it gets only too late

    def add(self, index: int | None, message: str, after: int = -1) -> None:
        """A problem, only a warning if a stage after ``after`` declares nothing: it may be
        the one that takes care of it."""
        blind = next((i for i in self.blind if i > after), None)
        if blind is not None:
            who = self.steps[blind].label_at
            message += f" (unless {who}, which declares nothing, takes care of it)"
        self.problems.append(FlowProblem(index, message, fatal=blind is None))

    def present(self, kind: type[Frame]) -> bool:
        return any(issubclass(made, kind) for made in self.made)

    def run(self) -> list[FlowProblem]:
        for index, step in enumerate(self.steps):
            flow = step.flow
            if flow is None:
                self.problems.append(
                    FlowProblem(
                        index,
                        f"{step.label} declares no frames it consumes or produces, so the "
                        f"pipeline check cannot tell whether it is in the right place; "
                        f"{DECLARE_HINT}",
                        fatal=False,
                    )
                )
                self.blind.append(index)
                continue
            for kind in flow.consumes:
                if not self.present(kind):
                    self.add(index, self.unmet(index, kind), after=-1)
            for kind in flow.drops:
                for made in [made for made in self.made if issubclass(made, kind)]:
                    del self.made[made]
                    self.dropped[made] = index
            for kind in flow.produces:
                self.made[kind] = index
                self.dropped.pop(kind, None)
        self.finish()
        return self.problems

    def unmet(self, index: int, kind: type[Frame]) -> str:
        step, role = self.steps[index], frame_role(kind)
        dropper = next((i for k, i in self.dropped.items() if issubclass(k, kind)), None)
        if dropper is not None:
            by = self.steps[dropper]
            hint = by.flow.drop_hint if by.flow is not None else ""
            return (
                f"{step.label} needs {role.what}, but {by.label_at} before it does not "
                f"pass it on" + (f": {hint}" if hint else "")
            )
        later = next(
            (i for i in range(index + 1, len(self.steps)) if _makes(self.steps[i].flow, kind)),
            None,
        )
        if later is not None:
            self.late.add((index, kind))
            maker = self.steps[later]
            lost = f": {role.lost}" if role.lost else ""
            return (
                f"{step.label} comes before {maker.label_at}, which makes the "
                f"{role.what} it needs{lost}. Move `{step.name}` after `{maker.name}`"
            )
        return f"{step.label} needs {role.what}, but nothing before it makes it: {role.fix}"

    def finish(self) -> None:
        """What reaches the session: replies it cannot play, or nothing for the caller at all."""
        unheard = False
        for kind, fix in UNHEARD.items():
            maker_index = self.made.get(kind)
            if maker_index is None:
                continue
            unheard = True
            maker, what = self.steps[maker_index], frame_role(kind).what
            taker = next(
                (
                    i
                    for i in range(maker_index)
                    if (flow := self.steps[i].flow) is not None and kind in flow.drops
                ),
                None,
            )
            if taker is not None and (taker, kind) in self.late:
                continue  # already said: the taker comes before the maker
            if taker is not None:
                early = self.steps[taker]
                self.add(
                    maker_index,
                    f"{maker.label} makes {what} after {early.label_at} has run, so the "
                    f"caller never hears it: move `{early.name}` after `{maker.name}`",
                    after=maker_index,
                )
            else:
                self.add(
                    maker_index,
                    f"no stage after {maker.label} turns its {what} into wire audio: {fix}",
                    after=maker_index,
                )
        if unheard or self.present(CALLER_HEARS):
            return
        what = frame_role(CALLER_HEARS).what
        dropper = self.dropped.get(CALLER_HEARS)
        if dropper is not None:
            label = self.steps[dropper].label
            self.add(dropper, f"{label} does not pass on {what}", after=dropper)
            return
        self.add(
            None,
            f"nothing in this pipeline makes {what}, so every call is silent: end it with a "
            "text-to-speech stage (such as `piper`) and an `encode` stage",
        )


def check_flow(steps: Sequence[FlowStep]) -> list[FlowProblem]:
    """Every problem with the order of ``steps``, in pipeline order (whole-pipeline ones last)."""
    return _Walk(steps).run()
