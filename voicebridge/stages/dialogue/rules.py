"""The ``rules`` dialogue: keyword, regex and keypad rules written as data.

An offline agent a user edits without code: a greeting, an ordered list of rules (the first match
answers), a fallback, and actions (hang up, transfer). Replies may use ``{name}`` placeholders
filled from a regex's named groups and ``{digits}`` (the keypad digits that matched).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from ruamel.yaml import YAML

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
from voicebridge.text import split_sentences


class Rule(BaseModel):
    """One rule: when it matches, the agent says ``reply`` and then does ``action``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keywords: list[str] = Field(default_factory=list, description="any of these words or phrases")
    regex: str | None = Field(None, description="a Python regex searched case-insensitively")
    dtmf: str | None = Field(
        None, description="regex the keypad entry must match whole, e.g. '0' or '\\d+#'"
    )
    reply: str | list[str] = Field(description="text to say; a list rotates through variants")
    action: Literal["hangup", "transfer"] | None = None
    transfer_to: str | None = Field(None, description="number or sip: URI for action transfer")

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
        return value

    @field_validator("dtmf")
    @classmethod
    def _dtmf_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"dtmf: invalid pattern {value!r}: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _complete(self) -> Rule:
        if not (self.keywords or self.regex or self.dtmf):
            raise ValueError("a rule needs at least one of keywords, regex or dtmf")
        if self.action == "transfer" and not self.transfer_to:
            raise ValueError("action transfer needs transfer_to")
        if isinstance(self.reply, list) and not self.reply:
            raise ValueError("reply list is empty")
        return self


class RulesParams(StageParams):
    greeting: str | None = Field(None, description="said when the call starts")
    fallback: str = Field(
        "Sorry, I didn't catch that. Could you say it another way?",
        description="said when no rule matches",
    )
    rules: list[Rule] = Field(default_factory=list, description="checked in order")
    rules_file: Path | None = Field(None, description="YAML file with more rules (a list)")
    max_digits: int = Field(16, ge=1, description="keypad digits remembered for dtmf rules")
    spoken_digits: bool = Field(
        True, description="match 'one two three' as '1 2 3' (transcribers write either)"
    )
    # A keypad entry accumulates until a dtmf rule matches it whole, then starts again.


class _Matcher:
    """A rule compiled for fast matching."""

    __slots__ = ("dtmf", "keywords", "regex", "replies", "rule")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        words = [re.escape(k.strip().lower()) for k in rule.keywords if k.strip()]
        self.keywords = re.compile(r"\b(?:" + "|".join(words) + r")\b") if words else None
        self.regex = re.compile(rule.regex, re.IGNORECASE) if rule.regex else None
        self.dtmf = re.compile(rule.dtmf) if rule.dtmf else None
        variants = [rule.reply] if isinstance(rule.reply, str) else list(rule.reply)
        self.replies = itertools.cycle(variants)

    def match_text(self, text: str) -> dict[str, str] | None:
        lowered = text.lower()
        if self.regex is not None:
            found = self.regex.search(text)
            if found is not None:
                groups = {k: v for k, v in found.groupdict().items() if v is not None}
                groups.update({str(i + 1): g for i, g in enumerate(found.groups()) if g})
                return groups
        if self.keywords is not None and self.keywords.search(lowered):
            return {}
        return None


class _SafeFormat(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def _with_spoken(groups: dict[str, str]) -> dict[str, str]:
    """Add ``<name>_spoken``: the value's digits one by one, as a receptionist reads them."""
    out = dict(groups)
    for key, value in groups.items():
        digits = re.sub(r"\D", "", value)
        out[f"{key}_spoken"] = " ".join(digits) if digits else value
    return out


_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_DIGIT_RUN = re.compile(
    r"\b(?:" + "|".join(_DIGIT_WORDS) + r")(?:[\s,.-]+(?:" + "|".join(_DIGIT_WORDS) + r"))+\b",
    re.IGNORECASE,
)


def digits_from_words(text: str) -> str:
    """Turn runs of two or more spoken digits ("one, two, three") into digits ("1 2 3").

    A lone "one" stays a word ("I need one cake"); a run is almost always a number read out.
    """

    def convert(match: re.Match[str]) -> str:
        words = re.findall(r"[a-z]+", match.group(0).lower())
        return " ".join(_DIGIT_WORDS[w] for w in words)

    return _DIGIT_RUN.sub(convert, text)


def load_rules_file(path: Path) -> list[Rule]:
    """Read a list of rules from YAML (a bare list, or a mapping with a ``rules`` key)."""
    data: Any = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("rules", [])
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of rules")
    return [Rule.model_validate(item) for item in data]


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
        self._matchers = [_Matcher(rule) for rule in rules]
        self._digits = ""

    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        if isinstance(frame, CallStarted):
            if self.params.greeting and not frame.resumed:
                await self.say(self.params.greeting)
        elif isinstance(frame, Transcript):
            if frame.final and frame.text.strip():
                await self._answer_text(frame.text)
        elif isinstance(frame, Dtmf):
            await self._answer_digit(frame.digit)

    async def _answer_text(self, text: str) -> None:
        if self.params.spoken_digits:
            text = digits_from_words(text)
        for matcher in self._matchers:
            groups = matcher.match_text(text)
            if groups is not None:
                await self._fire(matcher, groups)
                return
        await self.say(self.params.fallback)

    async def _answer_digit(self, digit: str) -> None:
        self._digits = (self._digits + digit)[-self.params.max_digits :]
        for matcher in self._matchers:
            if matcher.dtmf is not None and matcher.dtmf.fullmatch(self._digits):
                digits, self._digits = self._digits, ""
                await self._fire(matcher, {"digits": digits.strip("#*")})
                return

    async def _fire(self, matcher: _Matcher, groups: dict[str, str]) -> None:
        rule = matcher.rule
        reply = next(matcher.replies).format_map(_SafeFormat(_with_spoken(groups)))
        await self.say(reply)
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
