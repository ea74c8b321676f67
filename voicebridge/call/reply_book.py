"""What each agent reply said, so a dropped call can re-speak exactly what was not heard.

Kept by history entry (the turn a reply first spoke as): the text the dialogue produced for it,
the turns that re-spoke part of it (after a false interruption or a resume), and which entries
are finished. Bounded: entries older than a few turns are long settled and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReplyBook:
    text: dict[int, list[str]] = field(default_factory=dict)  # history entry -> pieces
    respoken: dict[int, int] = field(default_factory=dict)  # re-speaking turn -> entry
    done: set[int] = field(default_factory=set)  # entries that played to their end

    def entry_of(self, turn: int) -> int:
        """The history entry ``turn`` speaks for."""
        return self.respoken.get(turn, turn)

    def add_text(self, turn: int, text: str) -> None:
        if turn not in self.respoken:
            self.text.setdefault(turn, []).append(text)

    def finished(self, turn: int) -> None:
        entry = self.entry_of(turn)
        self.done.add(entry)
        self.text.pop(entry, None)
        self.forget_before(turn - 8)

    def forget_before(self, turn: int) -> None:
        for table in (self.text, self.respoken):
            for old in [t for t in table if t < turn]:
                del table[old]
        self.done = {t for t in self.done if t >= turn}
