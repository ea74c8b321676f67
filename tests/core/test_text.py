"""``edit_distance``: one Levenshtein distance for the word-timing matcher (spellings) and the
voice benchmark (word lists)."""

from __future__ import annotations

import pytest

from voicebridge.text import edit_distance


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("", "", 0),
        ("", "abc", 3),
        ("kitten", "sitting", 3),  # two substitutions and an insertion
        ("ðə", "ðə", 0),
        ("flaw", "lawn", 2),
        (["we", "open", "at", "nine"], ["we", "open", "nine"], 1),  # a word dropped
        (["four", "thirty", "pm"], ["four", "fifteen", "pm", "today"], 2),
    ],
)
def test_it_counts_the_edits_between_two_sequences(
    a: str | list[str], b: str | list[str], distance: int
) -> None:
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance  # the same both ways
