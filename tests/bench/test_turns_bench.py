"""The over-the-wire turn-taking benchmark's scoring (bench/turns.py), without a service: a line
counts as premature, answered, exact or on topic only when the record says so."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import turns  # noqa: E402
from bench.turn_corpus import Utterance  # noqa: E402

EMPTY = np.zeros(0, np.int16)


def paused(text: str = "My order number is five five one two seven.") -> Utterance:
    # lead 0.4 s; pause from 1.5 s to 2.3 s; the last word ends at 3.5 s
    return Utterance(
        "mulaw-s0-p2-800ms", text, "paused", "digits", "mulaw", 8000, EMPTY, 3500.0, 800, 1500.0
    )


def complete(text: str, category: str = "question") -> Utterance:
    return Utterance("mulaw-s0-c0", text, "complete", category, "mulaw", 8000, EMPTY, 2000.0)


def ev(t: float, kind: str, **fields: object) -> dict[str, object]:
    return {"t": t, "kind": kind, **fields}


def test_a_reply_that_starts_in_the_pause_is_premature() -> None:
    start = 10.0  # the line begins 10 s into the call
    events = [
        ev(start + 1.8, "speech_ended", at=start + 1.5),  # the turn ended inside the pause
        ev(start + 1.9, "caller_said", text="My order number is 551."),
        ev(start + 1.9, "agent_text", turn=3, text="Thank you. Order five five one...", last=True),
        ev(start + 4.1, "speech_ended", at=start + 3.5),
        ev(start + 4.2, "caller_said", text="2 7."),
        ev(start + 4.2, "agent_text", turn=4, text="Sorry, I can help with...", last=True),
    ]
    played = [start + 2.0, start + 4.3]
    r = turns.measure_line(paused(), "silence", start, start + 8.0, played, events, "x")
    assert r.ended_early and r.premature
    assert r.latency_s is None  # only complete lines are timed
    assert r.decided_s == 0.6  # the last end of turn, after the real end of speech
    assert r.transcript == "2 7." and r.reply.startswith("Sorry")
    assert r.digits == "55127" and r.digits_exact is False


def test_an_end_of_turn_in_the_pause_without_audio_is_counted_apart() -> None:
    start = 0.0
    events = [ev(1.8, "speech_ended", at=1.5), ev(3.8, "speech_ended", at=3.5)]
    r = turns.measure_line(paused(), "decision", start, 8.0, [4.0], events, "x")
    assert r.ended_early and not r.premature


def test_a_complete_line_answered_after_the_pause() -> None:
    start = 5.0
    text = "What time do you open tomorrow?"
    expected = turns.Receptionist().reply(text)
    assert expected.startswith("We're open from")
    events = [
        ev(start + 2.25, "speech_ended", at=start + 2.0),
        ev(start + 2.3, "caller_said", text=text),
        ev(start + 2.3, "agent_text", turn=2, text=expected, last=True),
    ]
    # the previous reply was still heard at the line's start: not this line's answer
    played = [start + 0.1, start + 2.45]
    r = turns.measure_line(complete(text), "decision", start, start + 9, played, events, expected)
    assert not r.ended_early and not r.premature
    assert r.latency_s == 0.45 and r.decided_s == 0.25
    assert r.on_topic is True and r.digits_exact is None


def test_digits_exact_needs_every_digit_read_back() -> None:
    text = "Five five one two."
    reply = turns.Receptionist().reply(text)
    assert "five five one two" in reply
    for said, exact in ((reply, True), (reply.replace("one two", "one"), False)):
        events = [ev(2.2, "speech_ended", at=2.0), ev(2.3, "agent_text", turn=1, text=said)]
        r = turns.measure_line(complete(text, "digits"), "v", 0.0, 9.0, [2.4], events, reply)
        assert r.digits == "5512" and r.digits_exact is exact
        assert r.on_topic is None  # only questions and statements are scored for topic


def test_spoken_digits_takes_the_longest_run() -> None:
    assert turns.spoken_digits("My phone number is five five five one two three four.") == (
        "5551234"
    )
    assert turns.spoken_digits("We live at forty two Harbor Street.") == "2"  # not a string
    assert turns.spoken_digits("I'd like to book a table for four people.") == "4"


def test_calls_end_with_the_lines_that_end_a_call() -> None:
    lines = [complete(f"Line {i}.") for i in range(30)] + [complete(t) for t in turns.ENDS_CALL]
    calls = turns.plan_calls(lines, seed=1)
    assert sorted(len(c) for c in calls) == [6, 13, 13]
    assert all(c[-1].text in turns.ENDS_CALL for c in calls[:2])
    assert sum(u.text in turns.ENDS_CALL for c in calls for u in c[:-1]) == 0
    assert turns.plan_calls(lines, seed=1) == calls  # seeded


def test_the_silence_variant_is_the_shipped_pipeline_with_the_old_timer(tmp_path: Path) -> None:
    paths = turns.variant_pipelines(tmp_path)
    assert paths["decision"] == turns.PIPELINE
    before = yaml.safe_load(paths["silence"].read_text())
    shipped = yaml.safe_load(turns.PIPELINE.read_text())
    (vad,) = [s for s in before["stages"] if s["type"] == "vad"]
    assert vad["params"]["end_of_turn"] == "silence" and vad["params"]["min_silence_ms"] == 500
    assert vad["params"]["pause_ms"] == 200  # whisper's speculative run, as before issue 15
    rest = [s for s in before["stages"] if s["type"] != "vad"]
    assert rest == [s for s in shipped["stages"] if s["type"] != "vad"]
    tried = turns.variant_pipelines(tmp_path, pause_ms=60)["decision-pause-60"]
    (vad,) = [s for s in yaml.safe_load(tried.read_text())["stages"] if s["type"] == "vad"]
    assert vad["params"]["pause_ms"] == 60 and vad["params"]["end_of_turn"]["text_cues"]


def test_summary_and_goals() -> None:
    lines = [
        turns.LineResult("a", "v", "", "paused", "digits", "mulaw", 800, premature=True),
        turns.LineResult("b", "v", "", "paused", "function", "mulaw", 1200, premature=False),
        turns.LineResult("c", "v", "", "complete", "question", "mulaw", 0, latency_s=0.4),
        turns.LineResult("d", "v", "", "complete", "question", "mulaw", 0, latency_s=0.6),
    ]
    s = turns.summarise(lines)
    assert s["premature_le_1s_pct"] == 100.0 and s["premature_pct"] == 50.0
    assert s["latency_ms"]["p50"] == 500 and s["latency_ms"]["n"] == 2
    verdict = turns.verdicts(s)
    assert verdict["premature_le_1s_pct"].startswith("missed")
    assert verdict["latency_p50_ms"].startswith("missed")
    assert "| premature, pauses <= 1 s |" in turns.markdown(
        {
            "mode": "test",
            "duration_s": 1.0,
            "others_cpu_pct": {"mean": 0, "max": 0},
            "variants": {"v": s},
            "goals": {"v": verdict},
        }
    )
