"""How the call page writes numbers and text: one place, so every part reads the same."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Final

MINUS: Final = "\u2212"  # a real minus sign (U+2212) reads better than a hyphen
DASH: Final = "\u2013"


def esc(text: object) -> str:
    """Everything from the call goes through here: a transcript may hold ``<script>``."""
    return html.escape(str(text), quote=True)


def secs(t: float | None, digits: int = 2) -> str:
    return DASH if t is None else f"{t:.{digits}f} s"


def dbfs(level: float | None) -> str:
    """A level in whole dBFS, never "-0": a full-scale peak is "0 dBFS", not negative zero."""
    if level is None:
        return "silent"
    whole = round(level)
    return f"{MINUS}{-whole} dBFS" if whole < 0 else f"{whole} dBFS"


def clock(t: float) -> str:
    """Axis labels: ``0.5s`` and ``7s`` under a minute, ``1:07`` after."""
    if t < 60:
        return f"{t:g}s"
    whole = round(t)
    if whole < 3600:
        return f"{whole // 60}:{whole % 60:02d}"
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def turns_label(turns: Sequence[int]) -> str:
    """The call's turn numbers of one row, as people read them: ``2`` or ``2, 3``."""
    return ", ".join(str(t) for t in turns)


def compact(value: object, limit: int = 400) -> str:
    """One line of JSON for raw rows (history extras, wire events), cut at ``limit``."""
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
