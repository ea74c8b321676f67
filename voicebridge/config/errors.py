"""Configuration problems, each tied to a file, a line and a YAML path.

A bad config must fail at load time with every problem listed, so an operator fixes the file in one
pass instead of one traceback at a time.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

KeyPath = tuple[Hashable, ...]


def format_path(path: Sequence[Hashable]) -> str:
    """Render a key path the way the YAML reads: ``stages[2].params.beam_size``."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


ISSUE_KINDS = ("invalid", "file", "extra")
"""What an issue is about: the content is ``invalid``; the ``file`` cannot be read at all; or an
optional dependency (an ``extra``) the content needs is not installed. The command line turns
them into distinct exit codes."""


@dataclass
class ConfigIssue:
    """One problem in one config source; ``line`` and ``column`` are 1-based when known."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str
    warning: bool = False  # a doubt that does not stop the file from loading
    kind: str = "invalid"  # one of ISSUE_KINDS

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.warning:
            where += ": warning"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"

    def sort_key(self) -> tuple[bool, int, int]:
        """File-level issues (no line) first, then in reading order."""
        return (self.line is not None, self.line or 0, self.column or 0)


class ConfigError(Exception):
    """A config failed to load; ``issues`` holds every problem found, not just the first."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = sorted(issues, key=ConfigIssue.sort_key)
        super().__init__(self.issues)

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)
