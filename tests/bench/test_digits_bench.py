"""The digit-string benchmark's corpus and scoring (bench/digits.py), without the models: the
corpus is what the results claim it is, and a transcript counts as exact only when it is."""

from __future__ import annotations

import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import digits  # noqa: E402
from voicebridge.digits import normalise_digits  # noqa: E402


def test_the_corpus_is_repeatable_and_covers_what_callers_say() -> None:
    corpus = digits.make_corpus(120, 15)
    assert corpus == digits.make_corpus(120, 15)
    assert all(4 <= len(s.digits) <= 8 and s.digits.isdigit() for s in corpus)
    texts = " ".join(s.text for s in corpus)
    for form in ("double", "triple", " oh", "zero", ","):
        assert form in texts
    assert {s.speed for s in corpus} == set(digits.SPEEDS)
    assert {s.pitch for s in corpus} == set(digits.PITCHES)


def test_every_spoken_form_normalises_back_to_its_digits() -> None:
    rng = random.Random(3)
    for _ in range(500):
        value = digits.make_digits(rng)
        said = digits.spoken(value, rng)
        assert digits.exact(normalise_digits(said), value), (value, said)


def test_exact_means_one_run_with_exactly_those_digits() -> None:
    assert digits.exact("Order 5512, please.", "5512")
    assert not digits.exact("Order 55512.", "5512")
    assert not digits.exact("Order 5512 for 2 people", "5512")  # a stray digit
    assert not digits.exact("Order 5512 or 5513", "5512")  # two runs
