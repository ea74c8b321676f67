"""The ``rules`` dialogue: keyword, regex and keypad rules written as data.

An offline agent a user edits without code: a greeting, a list of rules (the most specific match
answers, see :mod:`voicebridge.stages.dialogue.rule_match`), a fallback, and actions (hang up,
transfer). Replies may use ``{name}`` placeholders filled from a regex's named groups,
``{name_spoken}`` (its digits read one by one) and ``{digits}`` (the keypad digits that matched).
A rule with ``confirm`` asks first ("Did you say five five one two?") and answers on a yes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from voicebridge.digits import normalise_digits
from voicebridge.frames import (
    AgentText,
    AudioIn,
    CallStarted,
    Dtmf,
    Frame,
    Hangup,
    Transcript,
    Transfer,
)
from voicebridge.runtime.stage import Stage, StageParams
from voicebridge.stages.dialogue.rule_match import (
    Matcher,
    Rule,
    best_match,
    fill,
    load_rules_file,
    yes_or_no,
)
from voicebridge.text import fill_vars, split_sentences

__all__ = ["Rule", "RulesDialogue", "RulesParams", "load_rules_file"]


class RulesParams(StageParams):
    greeting: str | None = Field(None, description="said when the call starts")
    fallback: str = Field(
        "Sorry, I didn't catch that. Could you say it another way?",
        description="said when no rule matches",
    )
    rules: list[Rule] = Field(default_factory=list, description="see match")
    rules_file: Path | None = Field(None, description="YAML file with more rules (a list)")
    match: Literal["specific", "first"] = Field(
        "specific",
        description="specific: the most specific match answers (regex with a captured value, "
        "then the longest keyword phrase, then the most keywords; ties by order); "
        "first: the first rule that matches",
    )
    max_digits: int = Field(16, ge=1, description="keypad digits remembered for dtmf rules")
    spoken_digits: bool = Field(
        True, description="match 'five five one two' as '5512' (transcribers write either)"
    )
    confirm_question: str = Field(
        "Did you say {value_spoken}?", description="what a rule with confirm: true asks"
    )
    confirm_retry: str = Field(
        "Sorry about that. Please say it again.", description="said when the caller says no"
    )
    # A keypad entry accumulates until a dtmf rule matches it whole, then starts again.


class RulesDialogue(Stage):
    type_name = "rules"
    role = "dialogue"
    passthrough = (AudioIn,)  # caller audio goes around this stage
    description = "Offline dialogue from keyword/regex/keypad rules with greeting and fallback."
    Params = RulesParams

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        p: RulesParams = self.params
        rules = list(p.rules)
        if p.rules_file is not None:
            rules.extend(load_rules_file(p.rules_file))
        self._matchers = [Matcher(rule) for rule in rules]
        self._digits = ""
        # A rule with ``confirm`` that asked and waits for the caller's yes or no.
        self._asked: tuple[Matcher, dict[str, str]] | None = None

    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        if isinstance(frame, CallStarted):
            if self.params.greeting and not frame.resumed:
                await self.say(fill_vars(self.params.greeting, self.ctx.info.vars))
        elif isinstance(frame, Transcript):
            if frame.final and frame.text.strip():
                await self._answer_text(frame.text)
        elif isinstance(frame, Dtmf):
            await self._answer_digit(frame.digit)

    async def _answer_text(self, text: str) -> None:
        p: RulesParams = self.params
        if p.spoken_digits:
            text = normalise_digits(text)
        found = best_match(self._matchers, text, p.match)
        asked, self._asked = self._asked, None
        if asked is not None:
            answer = yes_or_no(text)
            if answer is True:
                await self._fire(*asked)
                return
            if answer is False and found is None:
                await self.say(p.confirm_retry)  # a bare "no": the caller says it again
                return
            # Neither, or "no, it's five five one three": the words are a new request.
        if found is None:
            await self.say(p.fallback)
        else:
            await self._answer(found[0], found[1].groups)

    async def _answer_digit(self, digit: str) -> None:
        self._digits = (self._digits + digit)[-self.params.max_digits :]
        for matcher in self._matchers:
            if matcher.dtmf is not None and matcher.dtmf.fullmatch(self._digits):
                digits, self._digits = self._digits, ""
                self._asked = None
                await self._answer(matcher, {"digits": digits.strip("#*")})
                return

    async def _answer(self, matcher: Matcher, groups: dict[str, str]) -> None:
        """Reply, or first ask whether the value was heard right (a rule with ``confirm``)."""
        confirm = matcher.rule.confirm
        if confirm:
            question = self.params.confirm_question if confirm is True else confirm
            self._asked = (matcher, groups)
            await self.say(fill(fill_vars(question, self.ctx.info.vars), groups))
        else:
            await self._fire(matcher, groups)

    async def _fire(self, matcher: Matcher, groups: dict[str, str]) -> None:
        rule = matcher.rule
        await self.say(fill(fill_vars(next(matcher.replies), self.ctx.info.vars), groups))
        if rule.action == "hangup":
            await self.emit(Hangup(reason="rules"))
        elif rule.action == "transfer" and rule.transfer_to:
            await self.emit(Transfer(to=rule.transfer_to, reason="rules"))

    async def say(self, text: str) -> None:
        """Speak ``text`` as one agent turn, one ``AgentText`` per sentence."""
        pieces = split_sentences(text)
        if not pieces:
            return
        turn = self.begin_turn()
        for index, piece in enumerate(pieces):
            await self.emit(AgentText(text=piece, turn=turn, last=index == len(pieces) - 1))
