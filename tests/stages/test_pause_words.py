"""When a streaming transcriber's results reach the VAD's pause (``PauseWords``), and how a
provider's stream offsets map to the call's stream time (``SentAudio``)."""

from __future__ import annotations

import pytest

from voicebridge.stages.stt.pause_words import Heard, PauseWords
from voicebridge.stages.stt.sent_audio import SentAudio

PAUSE = 1220.0  # the VAD's silence began here; the last word ended at about 1100


def partial(text: str, end: float, words_end: float | None = None, key: str = "r1") -> Heard:
    return Heard(key, text, False, end, words_end)


def final(text: str, end: float, words_end: float | None = None, key: str = "r1") -> Heard:
    return Heard(key, text, True, end, words_end)


def paused_words() -> PauseWords:
    words = PauseWords(slack_ms=150)
    words.speech_started(300)
    return words


@pytest.mark.parametrize(
    ("heard", "reaches"),
    [
        # Word times: the last word must end within the slack before the pause.
        (partial("a table for", end=1300, words_end=1100), True),
        (partial("a table for", end=1300, words_end=PAUSE - 150), True),
        (partial("a table", end=1300, words_end=PAUSE - 151), False),  # heard on, words lag
        # A final without word times: the provider is done with the audio before its end.
        (final("a table for", end=1100), True),
        (final("a table", end=1000), False),
        # An interim without word times (Google's): its end is how far it has listened.
        (partial("a table for", end=PAUSE), True),
        (partial("a table", end=PAUSE - 20), False),
    ],
)
def test_what_reaches_the_pause(heard: Heard, reaches: bool) -> None:
    words = paused_words()
    assert words.reaches(heard, PAUSE) is reaches
    assert words.paused(PAUSE) is None  # nothing heard yet
    assert words.result(heard) == ((PAUSE, heard.text) if reaches else None)


def test_a_lagging_partial_waits_for_the_one_that_reaches_the_pause() -> None:
    words = paused_words()
    assert words.result(partial("I'd like a table", end=1000, words_end=900)) is None
    assert words.paused(PAUSE) is None
    assert words.result(partial("I'd like a table", end=1300, words_end=900)) is None
    said = words.result(partial("I'd like a table for", end=1400, words_end=1100))
    assert said == (PAUSE, "I'd like a table for")
    assert words.results == 3


def test_results_that_came_before_the_pause_signal_are_offered_at_it() -> None:
    words = paused_words()
    assert words.result(partial("What time do you open?", end=1300, words_end=1100)) is None
    assert words.paused(PAUSE) == (PAUSE, "What time do you open?")


def test_the_utterance_so_far_is_its_finals_then_its_open_partial() -> None:
    words = paused_words()
    assert words.result(final("I'd like to book.", end=900, words_end=850, key="r1")) is None
    assert words.result(partial("A table for", end=1250, words_end=1100, key="r2")) is None
    assert words.paused(PAUSE) == (PAUSE, "I'd like to book. A table for")
    # The same words again are not offered twice; changed words are (the final's "?").
    assert words.result(partial("A table for", end=1300, words_end=1100, key="r2")) is None
    said = words.result(final("A table for two?", end=1210, words_end=1110, key="r2"))
    assert said == (PAUSE, "I'd like to book. A table for two?")
    assert words.text == "I'd like to book. A table for two?"


def test_a_word_inside_the_silence_ends_the_pause() -> None:
    words = paused_words()
    assert words.paused(PAUSE) is None
    # The caller spoke again: no words for this pause, even when later results reach it.
    assert words.result(partial("a table for four", end=1700, words_end=1600)) is None
    assert words.result(final("a table for four", end=1700, words_end=1600)) is None


def test_a_newer_pause_is_not_given_words_that_reach_only_an_older_one() -> None:
    words = paused_words()
    assert words.paused(PAUSE) is None
    assert words.result(partial("I'd like a table for", end=1300, words_end=1100)) == (
        PAUSE,
        "I'd like a table for",
    )
    assert words.paused(2420.0) is None  # the caller went on; a new silence at 2420
    assert words.result(final("I'd like a table for", end=1150, words_end=1100)) is None
    said = words.result(partial("four", end=2500, words_end=2300, key="r2"))
    assert said == (2420.0, "I'd like a table for four")


def test_after_the_turn_ends_nothing_is_offered() -> None:
    words = paused_words()
    words.paused(PAUSE)
    words.speech_ended()
    assert words.result(final("What time do you open?", end=1300, words_end=1100)) is None


def test_results_about_an_earlier_utterance_are_not_its_words() -> None:
    words = paused_words()
    words.result(final("Hello.", end=800, words_end=700))
    words.result(partial("and", end=1000, words_end=950, key="r2"))  # never finalized
    words.speech_ended()
    words.speech_started(2000)  # a new utterance
    assert words.result(final("Hello there.", end=1000, words_end=950, key="r2")) is None
    assert words.result(partial("Yes", end=2400, words_end=2300, key="r3")) is None
    assert words.text == "Yes"
    assert words.paused(2420.0) == (2420.0, "Yes")


def test_sent_audio_maps_offsets_through_starts_and_gaps() -> None:
    sent = SentAudio()
    assert sent.first_ms is None and sent.stream_ms(40.0) == 40.0
    # The stream opened at 5 s of call time and took 100 ms chunks ...
    for start in (5000.0, 5100.0, 5200.0):
        sent.sent(start, 100.0)
    # ... then 200 ms were dropped (a slow stream) before the next chunks.
    for start in (5500.0, 5600.0):
        sent.sent(start, 100.0)
    assert sent.first_ms == 5000.0 and sent.sent_ms == 500.0
    assert sent.stream_ms(0.0) == 5000.0
    assert sent.stream_ms(250.0) == 5250.0
    assert sent.stream_ms(300.0) == 5500.0  # the provider's 300 ms is the audio after the gap
    assert sent.stream_ms(450.0) == 5650.0
    assert sent.stream_ms(600.0) == 5800.0  # past what was sent: counts on
