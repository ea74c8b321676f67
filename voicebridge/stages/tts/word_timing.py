"""Word end times for a piece of agent speech, from what the speaker knows about its own audio.

The playback ledger decides which words the caller heard by comparing elapsed playout with each
word's end. Speakers report timings in their own units (Piper: samples per phoneme; Polly: speech
marks per word), and their idea of a "word" does not always match ``text.split()``: espeak merges
"of the" into one phoneme group and spells "42" as two. :func:`word_ends_for` maps the speaker's
units onto the text's whitespace words so the ledger always gets one end per word.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher
from typing import Any, Protocol

from voicebridge.text import edit_distance

# Phonemes that are not speech of a word: punctuation and Piper's sentence/pad markers.
PUNCTUATION = ",.;:!?¡¿—…\"'()"
_NOT_SPOKEN = set(PUNCTUATION) | {"^", "$", "_"}


def word_ends_for(
    text: str,
    unit_ends_ms: Sequence[float],
    *,
    word_keys: Sequence[str] | None = None,
    unit_keys: Sequence[str] | None = None,
) -> tuple[float, ...] | None:
    """One end time per whitespace word of ``text`` from the end times of the speaker's units.

    With ``word_keys``/``unit_keys`` (e.g. each word's phonemes said alone, each unit's
    phonemes), runs of words are matched to runs of units by how alike their keys are: a merged
    "of the" is one unit for two words, "42" two units for one word, and equal counts prove
    nothing (a merge and a split cancel out). Without keys, equal counts are taken as one unit
    per word, and otherwise runs are matched by where their boundaries fall in the whole.
    Words that share a unit all end with it: counted late rather than early.
    """
    words = text.split()
    if not words or not unit_ends_ms:
        return None
    ends = list(unit_ends_ms)
    for i in range(1, len(ends)):  # timings must not run backwards
        ends[i] = max(ends[i], ends[i - 1])
    if word_keys is not None and unit_keys is not None:
        if len(word_keys) != len(words) or len(unit_keys) != len(ends):
            return None
        last_unit = _align_keys(list(word_keys), list(unit_keys))
    elif len(ends) == len(words):
        return tuple(ends)
    else:
        sizes = [_spoken_size(w) for w in words]
        last_unit = _align_runs(_ShareCost(sizes, [1] * len(ends)), len(words), len(ends))
    return tuple(ends[j] for j in last_unit)


# (words, units) per run: "of the" is 2:1; "2026" is 1:4 ("two thousand twenty six").
_STEPS = ((1, 1), (2, 1), (1, 2), (3, 1), (1, 3), (4, 1), (1, 4), (1, 5), (1, 6))
_BAND_SLACK = 2  # boundaries stray from the diagonal by the count difference plus this
_UNEVEN_STEP_COST = 0.05  # prefer one word per unit when both fit as well (share costs)


def _spoken_size(word: str) -> int:
    """A word's rough length when spoken: its letters, a digit as a short word."""
    return max(1, sum(3 if ch.isdigit() else 1 for ch in word if ch.isalnum()))


class _ShareCost:
    """A run pair costs how far apart the boundaries after them fall, as shares of the whole."""

    def __init__(self, word_sizes: list[int], unit_sizes: list[int]) -> None:
        self.words = _cumulative_shares(word_sizes)
        self.units = _cumulative_shares(unit_sizes)

    def __call__(self, i: int, a: int, j: int, b: int) -> float:
        return abs(self.words[a] - self.units[b])

    def lower_bound(self, i: int, a: int, j: int, b: int) -> float:
        return 0.0


class _KeyCost:
    """A run pair costs the edit distance between their joined keys (absolute, so a long run
    that matches badly costs more than a short one)."""

    def __init__(self, word_keys: list[str], unit_keys: list[str]) -> None:
        self.words = word_keys
        self.units = unit_keys
        self.word_ends = _cumulative_lengths(word_keys)
        self.unit_ends = _cumulative_lengths(unit_keys)

    def __call__(self, i: int, a: int, j: int, b: int) -> float:
        return float(edit_distance("".join(self.words[i:a]), "".join(self.units[j:b])))

    def lower_bound(self, i: int, a: int, j: int, b: int) -> float:
        """Strings of different lengths are at least that difference apart."""
        left = self.word_ends[a] - self.word_ends[i]
        right = self.unit_ends[b] - self.unit_ends[j]
        return float(abs(left - right))


def _cumulative_lengths(keys: list[str]) -> list[int]:
    ends = [0]
    for key in keys:
        ends.append(ends[-1] + len(key))
    return ends


def _align_keys(word_keys: list[str], unit_keys: list[str]) -> list[int]:
    """:func:`_align_runs` by keys, run only between the stretches where keys are equal (most
    words), which keeps it cheap on long sentences."""
    n = len(word_keys)
    last_unit = [0] * n
    done_words = done_units = 0
    matcher = SequenceMatcher(None, word_keys, unit_keys, autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        gap_words, gap_units = a - done_words, b - done_units
        if gap_words and gap_units:
            cost = _KeyCost(word_keys[done_words:a], unit_keys[done_units:b])
            for k, unit in enumerate(_align_runs(cost, gap_words, gap_units)):
                last_unit[done_words + k] = done_units + unit
        elif gap_words:  # words with no unit of their own end with the next unit
            for k in range(done_words, a):
                last_unit[k] = min(b, len(unit_keys) - 1)
        elif gap_units and done_words:  # units with no word: the word before runs on
            last_unit[done_words - 1] = b - 1
        for k in range(size):
            last_unit[a + k] = b + k
        done_words, done_units = a + size, b + size
    return last_unit


class _RunCost(Protocol):
    def __call__(self, i: int, a: int, j: int, b: int) -> float: ...
    def lower_bound(self, i: int, a: int, j: int, b: int) -> float: ...


def _align_runs(cost_of: _RunCost, n: int, m: int) -> list[int]:
    """For each of ``n`` words, the index of the last of ``m`` units in the run it matches.

    Dynamic programming over run boundaries (runs as in ``_STEPS``), kept to a band around the
    diagonal.
    """
    inf = float("inf")
    band = abs(m - n) + _BAND_SLACK
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    back: list[list[tuple[int, int] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            here = cost[i][j]
            if here == inf or abs(j * n - i * m) > band * n:
                continue
            for di, dj in _STEPS:
                a, b = i + di, j + dj
                if a > n or b > m:
                    continue
                extra = _UNEVEN_STEP_COST if di != dj else 0.0
                if here + extra + cost_of.lower_bound(i, a, j, b) >= cost[a][b]:
                    continue  # cannot beat the best way here found so far
                step = cost_of(i, a, j, b) + extra
                if here + step < cost[a][b]:
                    cost[a][b] = here + step
                    back[a][b] = (i, j)
    if cost[n][m] == inf:  # counts too far apart for the runs: spread, rounding late
        return [min(m - 1, -(-(k + 1) * m // n) - 1) for k in range(n)]
    last_unit = [0] * n
    i, j = n, m
    while i > 0:
        previous = back[i][j]
        assert previous is not None
        for k in range(previous[0], i):
            last_unit[k] = j - 1
        i, j = previous
    return last_unit


def _cumulative_shares(sizes: list[int]) -> list[float]:
    total = float(sum(sizes))
    shares = [0.0]
    running = 0
    for size in sizes:
        running += size
        shares.append(running / total)
    return shares


_MARKS = set("ˈˌːʲ")  # stress and length marks: they differ between a word alone and in context


def phoneme_key(phonemes: Iterable[str]) -> str:
    """Phonemes as a plain string for matching: spoken phonemes only, no stress or length."""
    return "".join(p for p in phonemes if p not in _NOT_SPOKEN and p not in _MARKS and p != " ")


def piper_phoneme_groups(chunks: Iterable[Any]) -> tuple[list[float], list[str]] | None:
    """(end ms of each word's phoneme group, its phonemes as a key) of Piper's synthesis
    output, from its phoneme alignments; None when any chunk has none.

    A group is the phonemes between spaces; it ends with its last spoken phoneme (a pause or
    punctuation after it is not part of the word).
    """
    ends: list[float] = []
    keys: list[str] = []
    offset = 0
    for chunk in chunks:
        alignments = chunk.phoneme_alignments
        if alignments is None:
            return None
        rate = float(chunk.sample_rate)
        position = offset
        current: int | None = None
        group: list[str] = []
        for alignment in alignments:
            position += int(alignment.num_samples)
            if alignment.phoneme == " ":
                if current is not None:
                    ends.append(1000.0 * current / rate)
                    keys.append(phoneme_key(group))
                current, group = None, []
            elif alignment.phoneme not in _NOT_SPOKEN:
                current = position
                group.append(alignment.phoneme)
        if current is not None:
            ends.append(1000.0 * current / rate)
            keys.append(phoneme_key(group))
        offset += len(chunk.audio_int16_array)
    return ends, keys


def phoneme_string_groups(
    phonemes: Sequence[str], samples: Sequence[float], *, start: float = 0.0
) -> tuple[list[float], list[str]]:
    """(end of each word's phoneme group in samples, its phonemes as a key) of a phoneme
    string whose phoneme ``i`` lasts ``samples[i]``, the first beginning at ``start``.

    A group is the phonemes between spaces; it ends with its last spoken phoneme (a pause or
    punctuation after it is not part of the word).
    """
    ends: list[float] = []
    keys: list[str] = []
    position = start
    current: float | None = None
    group: list[str] = []
    for phoneme, length in zip(phonemes, samples, strict=True):
        position += float(length)
        if phoneme == " ":
            if current is not None:
                ends.append(current)
                keys.append(phoneme_key(group))
            current, group = None, []
        elif phoneme not in _NOT_SPOKEN and phoneme not in _MARKS:
            current = position
            group.append(phoneme)
    if current is not None:
        ends.append(current)
        keys.append(phoneme_key(group))
    return ends, keys
