"""Word timings from the speaker: which words the caller heard, exactly, when speech is uneven.

A real voice does not speak characters at an even rate (a short word can take as long as a long
one), so the character share can count a word whose end has not played yet. Speakers that know
their word ends (Piper's alignments, speech marks) attach them to ``AgentAudio``; the ledger and
the false-interruption resume then use them. The test speaker here makes every word 400 ms
whatever its length, with a 50 ms gap after it: "A b c extraordinary." ends its words at 0.40,
0.85, 1.30 and 1.75 s, where the character share would put them at 0.17, 0.34, 0.51 and 1.8 s.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from voicebridge.call.continuation import unheard_rest
from voicebridge.call.ledger import PlaybackLedger, count_heard, words_heard
from voicebridge.config import load_pipeline_text
from voicebridge.sim.signals import speech_like
from voicebridge.stages.tts.word_timing import word_ends_for
from voicebridge.testing.harness import CallHarness, ScriptedDialogue

GREETING = "A b c extraordinary."


def test_count_heard_uses_timings_when_they_fit_the_words() -> None:
    ends = (400.0, 850.0, 1300.0, 1750.0)
    assert count_heard(GREETING, 399.0, 1800.0, ends) == 0
    assert count_heard(GREETING, 400.0, 1800.0, ends) == 1
    assert count_heard(GREETING, 600.0, 1800.0, ends) == 1
    assert count_heard(GREETING, 1800.0, 1800.0, ends) == 4
    # Without timings, the character share counts "b" and "c" at 600 ms: the flaw timings fix.
    assert count_heard(GREETING, 600.0, 1800.0) == 3
    # Timings that do not give one end per word are not trusted.
    assert count_heard(GREETING, 600.0, 1800.0, (400.0, 850.0)) == 3


def test_ledger_pieces_carry_timings_into_words_heard() -> None:
    ledger = PlaybackLedger()
    piece = ledger.begin(1, GREETING, 1800.0, 0.0, last=True, word_ends_ms=(400, 850, 1300, 1750))
    ledger.sent(piece, 1800.0, 0.0)
    ledger.finish(piece, 0.0)
    assert words_heard(piece, 0.9) == "A b"
    result = ledger.clear(1.0)
    assert result.interrupted is piece
    assert piece.heard_text == "A b" and piece.heard_ms == pytest.approx(1000.0)


def test_unheard_rest_starts_where_the_last_heard_word_ends() -> None:
    rest = unheard_rest(GREETING, 2, 1800.0, (400.0, 850.0, 1300.0, 1750.0))
    assert rest.exact and rest.start_ms == 850.0
    assert rest.text == "c extraordinary."
    assert rest.word_ends_ms == (450.0, 900.0)
    by_share = unheard_rest(GREETING, 2, 1800.0, None)
    assert not by_share.exact and by_share.word_ends_ms is None
    assert by_share.start_ms == pytest.approx(1800.0 * 4 / 21)  # "A b " of "A b c extraordinary. "
    assert unheard_rest(GREETING, 4, 1800.0, None).text == ""


def test_word_ends_map_merged_and_split_units_onto_words() -> None:
    # Equal counts: unit i is word i; timings that run backwards are held level.
    assert word_ends_for("one two three", [100, 90, 300]) == (100, 100, 300)
    # espeak merges "of the" into one group: both words end with it, never earlier.
    ends = word_ends_for(
        "the end of the line",
        [200, 500, 800, 1100],
        word_keys=["the", "end", "of", "the", "line"],
        unit_keys=["the", "end", "ofthe", "line"],
    )
    assert ends == (200, 500, 800, 800, 1100)
    # "42" is two groups ("forty two"): the word ends with the second.
    ends = word_ends_for(
        "call 42 times",
        [250, 600, 850, 1300],
        word_keys=["kol", "fortitu", "taimz"],
        unit_keys=["kol", "forti", "tu", "taimz"],
    )
    assert ends == (250, 850, 1300)
    # A merge and a split in one sentence leave the counts equal; the keys still tell.
    ends = word_ends_for(
        "of the 42",
        [300, 600, 900],
        word_keys=["of", "the", "fortitu"],
        unit_keys=["ofthe", "forti", "tu"],
    )
    assert ends == (300, 300, 900)
    # Without keys, runs are matched by share of letters against share of units.
    assert word_ends_for("call 42 times", [250, 600, 850, 1300])[-1] == 1300
    assert word_ends_for("", [100]) is None
    assert word_ends_for("word", []) is None


def pipeline(word_timings: bool, lines: list[str]) -> Any:
    text = f"""
name: word-timings-test
session:
  chunk_ms: 100
  max_lead_ms: 600
  barge_in: {{guard_ms: 200, false_interruption_ms: 500}}
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: {lines!r}}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{greeting: {GREETING!r}, reply: "Sure."}}
  - type: voicebridge.testing:ToneSpeaker
    params: {{ms_per_word: 400, word_timings: {str(word_timings).lower()}}}
  - type: encode
"""
    return load_pipeline_text(text)


def seen_by_dialogue(call: CallHarness) -> list[list[tuple[str, str, bool]]]:
    assert call.session.pipeline is not None
    stage = call.session.pipeline.stages[3]
    assert isinstance(stage, ScriptedDialogue)
    return stage.seen


@pytest.mark.parametrize(("word_timings", "heard"), [(True, "A"), (False, "A b c")])
async def test_interruption_counts_only_words_whose_audio_played(
    word_timings: bool, heard: str
) -> None:
    async with CallHarness(pipeline(word_timings, ["wait"])) as call:
        await call.idle(0.4)
        await call.speak(speech_like(1.0, call.rate))  # the clear goes out at 0.6 s
        assert call.events("clearAudio")[0].t == pytest.approx(0.6, abs=0.03)
        await call.idle(2.0)
        assert seen_by_dialogue(call)[0][0] == ("agent", heard, True)


async def test_false_interruption_resumes_from_the_word_end_the_speaker_gave() -> None:
    async with CallHarness(pipeline(True, [""])) as call:  # a cough: no words
        await call.idle(0.8)
        await call.speak(speech_like(0.3, call.rate))  # clear at 1.0 s: "A b" played
        assert len(call.events("clearAudio")) == 1
        await call.idle(4.0)
        resumed = call.timeline("continued")
        assert resumed and resumed[0]["text"] == "c extraordinary."
        # The resumed audio starts exactly where "b" ended (0.85 s into the 1.8 s piece).
        sent = call.wire.sent
        after = sent[[m.get("event") for m in sent].index("clearAudio") + 1 :]
        payload = b"".join(
            base64.b64decode(m["media"]["payload"]) for m in after if m["event"] == "playAudio"
        )
        assert len(payload) / (2 * call.rate / 1000) == pytest.approx(1800 - 850, abs=1)
        pcm = np.frombuffer(payload, np.int16)
        assert not pcm[: call.rate // 20].any()  # it opens in the gap after "b", not mid-word
        assert call.session.ctx is not None
        assert [(h.role, h.text, h.interrupted) for h in call.session.ctx.history] == [
            ("agent", GREETING, False)
        ]
