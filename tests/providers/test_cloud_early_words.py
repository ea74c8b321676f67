"""The end of the turn from a streaming transcriber's words: ``vad`` with text cues before
``transcribe`` or ``google_stt``, against their wire-level fakes, on a virtual clock.

Audio goes in as a live call sends it, in lockstep with the fake: after every 100 ms the test
waits until the fake has heard it and sent what its script says for that much audio, and the stage
has taken those results in. So each scripted result reaches the VAD at the stream time it is
scripted for, and where the turn ends is exact. The caller speaks from 300 to 1100 ms; the VAD
hears the silence begin at 1220 ms (its hang-over), signals the pause at 1420 ms; ``check_ms``
200, ``min_silence_ms`` 800 (``check_ms + words_wait_ms``), ``max_silence_ms`` 1500.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_fakes
import pytest

from voicebridge.call.context import CallInfo
from voicebridge.frames import AudioIn, CallEnded, SpeechEnded, SpeechPaused
from voicebridge.runtime.stage import Stage
from voicebridge.stages.end_of_turn.words import EarlyWords
from voicebridge.stages.stt.google_stt import GoogleStt
from voicebridge.stages.stt.transcribe import Transcribe
from voicebridge.stages.vad import Vad

sys.path.insert(0, str(Path(__file__).parent))
import google_fakes
from google_fakes import Driven, FakeGoogle, audio_frames, until

pytestmark = pytest.mark.usefixtures("aws_env")

RATE = 8000
INFO = CallInfo(call_id="c-early", stream_id="s-early", encoding="audio/x-l16", sample_rate=RATE)
ONE_PAUSE = [("silence", 0.3), ("speech", 0.8), ("silence", 2.0)]
PAUSE_MS = 1220.0  # where the VAD hears ONE_PAUSE's silence begin (stream time from 0)


@dataclass(frozen=True)
class Say:
    """A scripted result, for either provider, in ms into its stream: the fake sends it once it
    has ``after_ms`` of audio. ``end_ms`` is how far the result reaches (Transcribe's EndTime,
    Google's result_end_offset: for an interim, how far the recogniser has listened);
    ``words_end_ms`` where its last word ends (Transcribe's items; Google's word offsets, which
    it gives on finals only)."""

    after_ms: float
    text: str
    end_ms: float
    words_end_ms: float | None = None
    final: bool = False


@dataclass
class Cloud:
    """A provider's fake and stage, with what the lockstep waits on."""

    stage: Stage
    heard_ms: Callable[[], float]  # audio the fake has answered for
    results_sent: Callable[[], int]
    results_taken: Callable[[], int]  # results the stage has taken in


@asynccontextmanager
async def transcribe(script: list[Say]) -> AsyncIterator[Cloud]:
    lines = []
    result = 1
    for s in script:
        words_end = None if s.words_end_ms is None else s.words_end_ms / 1000
        lines.append(
            aws_fakes.ScriptedResult(
                s.after_ms, s.text, not s.final, s.end_ms / 1000, words_end, f"result-{result}"
            )
        )
        result += s.final  # a final ends its result: the next words are a new one
    async with aws_fakes.FakeTranscribe(script=lines) as fake:
        stage = Transcribe(endpoint=fake.url, reconnect_backoff_s=0.01, final_timeout_ms=100)
        words = stage.pause_words
        yield Cloud(stage, lambda: fake.heard_ms, lambda: fake.results_sent, lambda: words.results)


@asynccontextmanager
async def google(script: list[Say]) -> AsyncIterator[Cloud]:
    async with FakeGoogle() as fake:
        fake.stt_script = [
            google_fakes.ScriptedResult(s.after_ms, s.text, s.final, s.end_ms, s.words_end_ms)
            for s in script
        ]
        stage = GoogleStt(endpoint=fake.endpoint, insecure=True, project="proj-1")
        words = stage.pause_words
        yield Cloud(
            stage, lambda: fake.stt_heard_ms, lambda: fake.stt_results_sent, lambda: words.results
        )


PROVIDERS = pytest.mark.parametrize("provider", [transcribe, google], ids=["aws", "google"])


def vad() -> Vad:
    """The VAD as pipelines/aws.yaml and google.yaml set it up."""
    return Vad(
        min_silence_ms=800,
        pause_ms=200,
        forward_audio=True,
        end_of_turn={
            "text_cues": True,
            "check_ms": 200,
            "full_stop_ms": 800,
            "max_silence_ms": 1500,
            "words_wait_ms": 600,
        },
    )


@dataclass
class Outcome:
    frames: list[Any]
    published: list[tuple[float, str]]

    @property
    def ends(self) -> list[SpeechEnded]:
        return [f for f in self.frames if isinstance(f, SpeechEnded)]

    @property
    def pauses(self) -> list[float]:
        return [f.at_ms for f in self.frames if isinstance(f, SpeechPaused)]

    def decided_ms(self, end: SpeechEnded) -> float:
        """How long after the silence began the turn ended: the end of the last caller frame
        the VAD had analysed when it ended it."""
        before = [f for f in self.frames[: self.frames.index(end)] if isinstance(f, AudioIn)]
        return before[-1].timestamp_ms + 20.0 - end.at_ms


async def settled(run: Driven, vad: Vad) -> None:
    """Every frame pushed so far has been handled, and so has every decision the VAD took on
    words (its background work). The transcriber may still be waiting for a final after the
    VAD's end (that wait counts as busy for ``Pipeline.idle``): not waited for here."""
    runners = run.pipeline._runners

    def handled() -> bool:
        frames_done = all(not r.busy and r.queue.empty() for r in runners)
        return frames_done and not vad.has_background_work

    await until(handled)


async def call(
    provider: Any, script: list[Say], parts: list[tuple[str, float]], start_ms: float = 0.0
) -> Outcome:
    frames = audio_frames(parts, RATE, start_ms=start_ms)
    published: list[tuple[float, str]] = []
    async with provider(script) as cloud:
        turns = vad()
        async with Driven([turns, cloud.stage], INFO) as run:
            EarlyWords.of(run.ctx).subscribe(lambda since, text: published.append((since, text)))
            for index, frame in enumerate(frames, 1):
                await run.pipeline.push(frame)
                await settled(run, turns)
                if index % 5 == 0:  # 100 ms: the stage's chunk went out; the fake answers it
                    sent_ms = 20.0 * index
                    await until(lambda: cloud.heard_ms() >= sent_ms)  # noqa: B023
                    await until(lambda: cloud.results_taken() >= cloud.results_sent())
                    await settled(run, turns)
            await run.push(CallEnded())
            await run.drain()
        assert run.errors == [] and run.provider_errors == []
        return Outcome(run.frames, published)


@PROVIDERS
async def test_a_question_ends_the_turn_at_check_ms_once_a_result_reaches_the_pause(
    provider: Any,
) -> None:
    script = [
        Say(1000, "What time", end_ms=1000, words_end_ms=700),
        Say(1300, "What time do you open?", end_ms=1300, words_end_ms=1100),
    ]
    out = await call(provider, script, ONE_PAUSE)
    (end,) = out.ends
    assert out.pauses == [PAUSE_MS] and end.at_ms == PAUSE_MS
    assert out.decided_ms(end) == 200.0  # not the 800 ms timer
    assert out.published == [(PAUSE_MS, "What time do you open?")]


@PROVIDERS
async def test_a_result_that_comes_after_check_ms_ends_the_turn_when_it_comes(
    provider: Any,
) -> None:
    script = [Say(1600, "Where are you located?", end_ms=1600, words_end_ms=1100)]
    out = await call(provider, script, ONE_PAUSE)
    (end,) = out.ends
    assert out.decided_ms(end) == 1600.0 - PAUSE_MS  # the moment the words reached the VAD


@PROVIDERS
async def test_a_trailing_for_keeps_the_turn_open_until_max_silence(provider: Any) -> None:
    script = [Say(1300, "I'd like to book a table for", end_ms=1300, words_end_ms=1100)]
    out = await call(provider, script, ONE_PAUSE)
    (end,) = out.ends
    assert out.decided_ms(end) == 1500.0


@PROVIDERS
async def test_a_lagging_partial_is_not_used_and_the_one_that_reaches_the_pause_is(
    provider: Any,
) -> None:
    # At the pause the recogniser has only "Yes." (a short answer: it would end the turn at
    # check_ms); it has not heard the rest yet. The result that reaches the pause goes on.
    script = [
        Say(1300, "Yes.", end_ms=1000, words_end_ms=600),
        Say(1500, "Yes, and a table for", end_ms=1500, words_end_ms=1100),
    ]
    out = await call(provider, script, ONE_PAUSE)
    (end,) = out.ends
    assert out.published == [(PAUSE_MS, "Yes, and a table for")]
    assert out.decided_ms(end) == 1500.0


@PROVIDERS
async def test_with_no_result_reaching_the_pause_the_silence_timer_decides(provider: Any) -> None:
    script = [Say(1300, "What time do you open?", end_ms=1000, words_end_ms=700)]
    out = await call(provider, script, ONE_PAUSE)
    (end,) = out.ends
    assert out.published == []
    assert out.decided_ms(end) == 800.0


@PROVIDERS
async def test_a_final_that_reaches_the_pause_brings_its_words(provider: Any) -> None:
    # Google's finals (word offsets) and Transcribe's: the endpoint may sit a little before the
    # VAD's silence (1100 against 1220), within early_words_slack_ms.
    script = [
        Say(1200, "no thanks", end_ms=1200),
        Say(1300, "No, thanks.", end_ms=1100, words_end_ms=1100, final=True),
    ]
    out = await call(provider, script, ONE_PAUSE)
    (end,) = out.ends
    assert out.published[-1] == (PAUSE_MS, "No, thanks.")
    assert out.decided_ms(end) == 200.0


@PROVIDERS
async def test_provider_times_are_mapped_to_the_call_s_stream_time(provider: Any) -> None:
    # The call's audio starts at 5 s of stream time; the provider counts from its first audio.
    script = [Say(1300, "What time do you open?", end_ms=1300, words_end_ms=1100)]
    out = await call(provider, script, ONE_PAUSE, start_ms=5000.0)
    (end,) = out.ends
    assert out.published == [(5000.0 + PAUSE_MS, "What time do you open?")]
    assert out.decided_ms(end) == 200.0


TWO_PARTS = [("silence", 0.3), ("speech", 0.8), ("silence", 0.6), ("speech", 0.6), ("silence", 2)]


@PROVIDERS
@pytest.mark.parametrize(
    ("later", "expected_ms"),
    [
        # Only a late final about the first part: it does not reach the second pause, and the
        # first pause's "...for" is void: the silence timer ends the turn, not max_silence_ms.
        ([], 800.0),
        # A result that reaches the second pause decides it.
        ([Say(2600, "four, please.", end_ms=2600, words_end_ms=2300)], 200.0),
    ],
    ids=["stale", "covered"],
)
async def test_speech_resuming_voids_the_pause_and_its_words(
    provider: Any, later: list[Say], expected_ms: float
) -> None:
    script = [
        Say(1300, "I'd like a table for", end_ms=1300, words_end_ms=1100),
        Say(2500, "I'd like a table for", end_ms=1150, words_end_ms=1100, final=True),
        *later,
    ]
    out = await call(provider, script, TWO_PARTS)
    first, second = out.pauses
    (end,) = out.ends  # the 600 ms pause after "...for" did not end the turn
    assert end.at_ms == second
    assert out.published[0] == (first, "I'd like a table for")
    # Words after the first pause may still be offered for it (Google's interim results have
    # no word times to tell), but the VAD has moved on: nothing old is offered for the second.
    for_second = [text for since, text in out.published if since == second]
    assert for_second == ["I'd like a table for four, please." for _ in later]
    assert out.decided_ms(end) == expected_ms
