"""The heard history, as the context a fresh model session is given after a reconnect.

A realtime session's conversation lives on the provider's side and dies with its socket. A new
session starts empty, so it is told the conversation as the call's history has it: the caller's
words, and the agent's as the caller heard them (an interrupted reply ends in "[interrupted]",
as the ``llm`` stage shows it). Audio is not replayed, only text: what the caller heard is the
history, not what the old session had generated.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicebridge.call.context import HistoryEntry


@dataclass(frozen=True, slots=True)
class ReplayLine:
    role: str  # "user" or "assistant"
    text: str


def replay_lines(history: list[HistoryEntry], limit: int) -> list[ReplayLine]:
    """The last ``limit`` entries of ``history`` worth replaying, oldest first."""
    if limit <= 0:
        return []
    lines: list[ReplayLine] = []
    for entry in history[-limit:]:
        text = entry.as_prompt_text().strip()
        if not entry.text.strip():
            continue  # a reply cut off before the caller heard a word
        lines.append(ReplayLine("user" if entry.role == "caller" else "assistant", text))
    return lines
