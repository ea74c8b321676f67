"""The vad stage's end-of-turn decision on a virtual clock, with a fake verdict source."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from voicebridge.call.context import CallInfo
from voicebridge.frames import PCM, AudioIn, Frame, SpeechEnded, SpeechPaused
from voicebridge.runtime.stage import Stage, StageError
from voicebridge.sim.signals import silence, speech_like
from voicebridge.stages.end_of_turn.words import EarlyWords
from voicebridge.stages.offline_models import OfflineModelError, smart_turn_model_path
from voicebridge.stages.vad import EndOfTurnParams, SmartTurnScorer, Vad
from voicebridge.testing.harness import run_stages

RATE = 8000


class Answers:
    """A verdict source that answers from a list (the last answer repeats) and keeps what it
    was asked; an Exception in the list is raised."""

    def __init__(self, *answers: float | Exception) -> None:
        self.answers = list(answers)
        self.asked: list[int] = []  # samples of audio per check

    async def __call__(self, pcm: PCM, rate: int) -> float:
        self.asked.append(pcm.size)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class SaysAtPause(Stage):
    """A transcriber stand-in: at each pause, publishes the next of these words (the last
    repeats) for the decision, as whisper's speculative run does."""

    def __init__(self, *words: str) -> None:
        super().__init__()
        self.words = list(words)

    async def start(self) -> None:
        EarlyWords.of(self.ctx).announce()

    async def process(self, frame: Frame) -> None:
        if isinstance(frame, SpeechPaused):
            words = self.words.pop(0) if len(self.words) > 1 else self.words[0]
            EarlyWords.of(self.ctx).publish(frame.at_ms, words)
        await self.emit(frame)


def track(*parts: tuple[str, float]) -> list[AudioIn]:
    pcm = np.concatenate(
        [speech_like(s, RATE) if kind == "speech" else silence(s, RATE) for kind, s in parts]
    )
    step = RATE // 50
    return [AudioIn(pcm[i : i + step], 1000.0 * i / RATE) for i in range(0, len(pcm), step)]


async def run(
    vad: Vad, scorer: Answers | None, frames: list[AudioIn], after: Sequence[Stage] = ()
) -> tuple[list[Frame], list[SpeechEnded]]:
    vad.scorer = scorer
    out = await run_stages(
        [vad, *after], frames, info=CallInfo(sample_rate=RATE), frame_interval_s=0.02
    )
    assert out.errors == []
    ends = [f for f in out.frames if isinstance(f, SpeechEnded)]
    return out.frames, ends


def decided_ms(frames: list[Frame], end: SpeechEnded) -> float:
    """How long after the silence began the turn was ended: the end of the last caller frame
    the stage had seen when it sent ``end`` (it forwards each frame before analysing it)."""
    before = [f for f in frames[: frames.index(end)] if isinstance(f, AudioIn)]
    return before[-1].timestamp_ms + 20.0 - end.at_ms


def smart(**eot: Any) -> Vad:
    return Vad(
        min_silence_ms=500,
        pause_ms=200,
        forward_audio=True,
        end_of_turn={"model": "smart-turn", "check_ms": 200, "max_silence_ms": 1200, **eot},
    )


async def test_a_complete_verdict_ends_the_turn_at_the_check_not_after_the_silence_window() -> None:
    scorer = Answers(0.9)
    frames, ends = await run(
        smart(), scorer, track(("silence", 0.3), ("speech", 0.8), ("silence", 1.5))
    )
    (end,) = ends
    assert decided_ms(frames, end) == 200.0
    assert len(scorer.asked) == 1
    # The model heard the utterance so far: pre-roll, speech, and the 200 ms pause.
    assert scorer.asked[0] == len(end.audio)


async def test_an_incomplete_verdict_waits_and_speech_resuming_keeps_one_utterance() -> None:
    scorer = Answers(0.1, 0.9)  # "not done" at the mid-sentence pause, "done" at the end
    frames, ends = await run(
        smart(),
        scorer,
        track(("silence", 0.3), ("speech", 0.8), ("silence", 0.8), ("speech", 0.6), ("silence", 2)),
    )
    (end,) = ends  # one turn: the 800 ms pause did not end it (silence-only at 500 ms would)
    pauses = [f for f in frames if isinstance(f, SpeechPaused)]
    assert len(pauses) == 2 and pauses[-1].at_ms == end.at_ms  # whisper's speculation matches
    assert end.at_ms > 1900  # the second silence
    assert decided_ms(frames, end) == 200.0
    assert len(end.audio) > 2.2 * RATE  # both parts and the pause between them


async def test_silence_only_ends_the_same_track_in_the_pause() -> None:
    vad = Vad(min_silence_ms=500, pause_ms=200, forward_audio=True, end_of_turn="silence")
    frames, ends = await run(
        vad,
        None,
        track(("silence", 0.3), ("speech", 0.8), ("silence", 0.8), ("speech", 0.6), ("silence", 2)),
    )
    assert len(ends) == 2
    assert [decided_ms(frames, end) for end in ends] == [500.0, 500.0]


async def test_an_unfinished_sounding_turn_ends_at_the_longer_limit() -> None:
    frames, ends = await run(
        smart(), Answers(0.2), track(("silence", 0.3), ("speech", 0.8), ("silence", 2.0))
    )
    (end,) = ends
    assert decided_ms(frames, end) == 1200.0


async def test_a_failed_check_falls_back_to_the_silence_timer() -> None:
    frames, ends = await run(
        smart(),
        Answers(RuntimeError("model broke")),
        track(("silence", 0.3), ("speech", 0.8), ("silence", 1.5)),
    )
    (end,) = ends
    assert decided_ms(frames, end) == 500.0


def text(**eot: Any) -> Vad:
    return Vad(
        min_silence_ms=500,
        pause_ms=200,
        forward_audio=True,
        end_of_turn={"text_cues": True, "max_silence_ms": 1500, "digit_lengths": [5], **eot},
    )


@pytest.mark.parametrize(
    ("words", "expected_ms"),
    [
        ("What time do you open?", 200.0),
        ("No thanks", 200.0),
        ("My order number is 55127.", 200.0),
        ("I'd like to book a table for", 1500.0),
        ("My order number is 551.", 1500.0),
        ("Could you tell me", 500.0),
    ],
)
async def test_text_cues_alone_decide_with_no_model(words: str, expected_ms: float) -> None:
    frames, ends = await run(
        text(),
        None,
        track(("silence", 0.3), ("speech", 0.8), ("silence", 2.0)),
        [SaysAtPause(words)],
    )
    (end,) = ends
    assert decided_ms(frames, end) == expected_ms


@pytest.mark.parametrize(
    ("words", "expected_ms"),
    [("I want to order a birthday cake.", 800.0), ("Where are you located?", 200.0)],
)
async def test_a_plain_statement_waits_full_stop_ms(words: str, expected_ms: float) -> None:
    frames, ends = await run(
        text(full_stop_ms=800),
        None,
        track(("silence", 0.3), ("speech", 0.8), ("silence", 2.0)),
        [SaysAtPause(words)],
    )
    (end,) = ends
    assert decided_ms(frames, end) == expected_ms


async def test_a_pause_held_open_by_its_words_joins_the_next_speech_in_one_utterance() -> None:
    frames, ends = await run(
        text(),
        None,
        track(("silence", 0.3), ("speech", 0.8), ("silence", 1.2), ("speech", 0.6), ("silence", 2)),
        [SaysAtPause("I'd like to book a table for", "I'd like to book a table for four.")],
    )
    (end,) = ends  # the 1.2 s pause did not end the turn
    assert end.at_ms > 2900  # the second silence
    assert decided_ms(frames, end) == 200.0


async def test_without_a_transcriber_that_publishes_words_it_is_the_silence_timer() -> None:
    frames, ends = await run(
        text(), None, track(("silence", 0.3), ("speech", 0.8), ("silence", 2.0))
    )
    (end,) = ends
    assert decided_ms(frames, end) == 500.0


@pytest.mark.parametrize(
    ("words", "expected_ms"), [("I'd like to book a table for", 1200.0), ("What time?", 200.0)]
)
async def test_text_cues_keep_an_unfinished_sentence_open(words: str, expected_ms: float) -> None:
    frames, ends = await run(
        smart(text_cues=True),
        Answers(0.95),  # the voice sounds done either way
        track(("silence", 0.3), ("speech", 0.8), ("silence", 2.0)),
        after=[SaysAtPause(words)],
    )
    (end,) = ends
    assert decided_ms(frames, end) == expected_ms


def test_yaml_shorthand_and_defaults() -> None:
    assert Vad(end_of_turn="smart-turn").params.end_of_turn.model == "smart-turn"
    cues = Vad(end_of_turn="text", pause_ms=200).params.end_of_turn
    assert cues.text_cues and cues.model == "none"
    with pytest.raises(ValueError, match="text_cues needs pause_ms > 0"):
        Vad(end_of_turn="text")  # no pause signal: whisper would never transcribe at a pause
    legacy = Vad(end_of_turn={"model": "silence"}).params.end_of_turn
    assert legacy.model == "none" and not legacy.text_cues
    default = Vad().params.end_of_turn
    assert default.model == "none" and not default.text_cues and default.max_silence_ms == 1500
    with pytest.raises(ValueError, match="end_of_turn"):
        Vad(end_of_turn="magic")


def test_a_missing_model_file_is_a_clear_error(tmp_path: Any) -> None:
    params = EndOfTurnParams(model="smart-turn", model_path=tmp_path / "nope.onnx")
    with pytest.raises(StageError, match=r"vad: end_of_turn: .*nope.onnx"):
        SmartTurnScorer(params)


def test_a_missing_wheel_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(OfflineModelError, match=r"pip install --no-deps 'pipecat-ai==1\.14\.0'"):
        smart_turn_model_path()
