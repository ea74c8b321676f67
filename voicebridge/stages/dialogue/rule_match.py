"""Rules as data, and which rule a caller's words match best.

A receptionist's rules overlap: "I'd like to order a birthday cake" holds the keyword ``order``
of the order-status rule and the phrase ``order a`` of the booking rule. Taking the first rule
in the file makes the answer depend on the order someone happened to write them in, so the
rule that matches *most specifically* answers (:class:`Specificity`), and the file's order only
breaks ties. ``match: first`` keeps the old behaviour.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from ruamel.yaml import YAML

from voicebridge.digits import digits_spoken


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
    confirm: bool | str = Field(
        False,
        description="ask first and answer only on a yes: true asks the rules' confirm_question, "
        "a string is the question itself (placeholders as in reply)",
    )

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
        if isinstance(self.confirm, str) and not self.confirm.strip():
            raise ValueError("confirm question is empty")
        return self


def load_rules_file(path: Path) -> list[Rule]:
    """Read a list of rules from YAML (a bare list, or a mapping with a ``rules`` key)."""
    data: Any = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("rules", [])
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of rules")
    return [Rule.model_validate(item) for item in data]


@dataclass(frozen=True, order=True, slots=True)
class Specificity:
    """How specifically a rule matched; a larger value wins. Compared field by field:

    1. ``captured``: its regex matched and captured a value (an order number): the caller
       said exactly what the rule is written for;
    2. ``regex``: its regex matched;
    3. ``phrase``: words in the longest keyword phrase that matched ("order a" is 2);
    4. ``words``: words of the text covered by its keywords (more keywords matched).
    """

    captured: bool = False
    regex: bool = False
    phrase: int = 0
    words: int = 0


@dataclass(frozen=True, slots=True)
class Match:
    groups: dict[str, str]
    specificity: Specificity


class Matcher:
    """A rule compiled for matching; rotates through the rule's reply variants."""

    __slots__ = ("dtmf", "keywords", "regex", "replies", "rule")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        phrases = sorted({" ".join(k.lower().split()) for k in rule.keywords if k.strip()}, key=len)
        # Longest first: the alternation then takes "order a" over "order" where both fit.
        words = [r"\s+".join(map(re.escape, p.split())) for p in reversed(phrases)]
        self.keywords = re.compile(r"\b(?:" + "|".join(words) + r")\b") if words else None
        self.regex = re.compile(rule.regex, re.IGNORECASE) if rule.regex else None
        self.dtmf = re.compile(rule.dtmf) if rule.dtmf else None
        variants = [rule.reply] if isinstance(rule.reply, str) else list(rule.reply)
        self.replies = itertools.cycle(variants)

    def match_text(self, text: str) -> Match | None:
        """How ``text`` matches this rule: the regex's groups and the match's specificity."""
        groups: dict[str, str] | None = None
        if self.regex is not None:
            found = self.regex.search(text)
            if found is not None:
                groups = {k: v for k, v in found.groupdict().items() if v is not None}
                groups.update({str(i + 1): g for i, g in enumerate(found.groups()) if g})
        phrase = words = 0
        if self.keywords is not None:
            for hit in self.keywords.finditer(text.lower()):
                size = len(hit.group().split())
                phrase, words = max(phrase, size), words + size
        if groups is None and not words:
            return None
        specificity = Specificity(bool(groups), groups is not None, phrase, words)
        return Match(groups or {}, specificity)


def best_match(
    matchers: list[Matcher], text: str, mode: Literal["specific", "first"]
) -> tuple[Matcher, Match] | None:
    """The rule that answers ``text``: the most specific match (ties: the earlier rule), or
    with ``mode="first"`` the first rule that matches at all."""
    best: tuple[Matcher, Match] | None = None
    for matcher in matchers:
        found = matcher.match_text(text)
        if found is None:
            continue
        if mode == "first":
            return matcher, found
        if best is None or found.specificity > best[1].specificity:
            best = (matcher, found)
    return best


class _SafeFormat(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def fill(template: str, groups: dict[str, str]) -> str:
    """``template`` with its placeholders filled: each group ``{name}``, ``{name_spoken}`` (its
    digits read one by one: "five five one two"), and ``{value}`` / ``{value_spoken}`` for the
    first value captured. Unknown placeholders become empty."""
    values = dict(groups)
    first = next(iter(groups.values()), "")
    values.setdefault("value", first)
    for key, value in list(values.items()):
        values[f"{key}_spoken"] = digits_spoken(value)
    return template.format_map(_SafeFormat(values))


_NO = re.compile(r"\b(?:no|nope|nah|not|wrong|incorrect|negative)\b", re.IGNORECASE)
_YES = re.compile(
    r"\b(?:yes|yeah|yep|yup|yea|correct|right|exactly|sure|affirmative|absolutely|indeed)\b",
    re.IGNORECASE,
)


def yes_or_no(text: str) -> bool | None:
    """The caller's answer to a yes/no question: True, False, or None when it is neither.
    "No" wins over "yes" words ("no, that's not right" holds "right")."""
    if _NO.search(text):
        return False
    if _YES.search(text):
        return True
    return None
