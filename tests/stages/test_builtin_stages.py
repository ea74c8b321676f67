import numpy as np
import pytest

from voicebridge.audio.codec import codec_for
from voicebridge.call.context import CallInfo
from voicebridge.frames import (
    AgentAudio,
    AgentText,
    AudioIn,
    Dtmf,
    Hangup,
    MediaIn,
    OutputAudio,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    Transcript,
    Transfer,
)
from voicebridge.sim.signals import silence, speech_like
from voicebridge.stages.decode import Decode
from voicebridge.stages.dialogue.rules import Rule, RulesDialogue
from voicebridge.stages.echo import Echo
from voicebridge.stages.encode import Encode
from voicebridge.stages.vad import Vad
from voicebridge.testing.harness import run_stages

FORMATS = [("audio/x-mulaw", 8000), ("audio/x-l16", 8000), ("audio/x-l16", 16000)]


def audio_frames(pcm: np.ndarray, rate: int, frame_ms: int = 20) -> list[AudioIn]:
    step = rate * frame_ms // 1000
    return [
        AudioIn(pcm[i : i + step], timestamp_ms=1000.0 * i / rate) for i in range(0, len(pcm), step)
    ]


@pytest.mark.parametrize(("encoding", "rate"), FORMATS)
async def test_decode_then_encode_round_trips_each_codec(encoding: str, rate: int) -> None:
    codec = codec_for(encoding)
    pcm = speech_like(0.1, rate)
    payload = codec.encode(pcm)
    run = await run_stages(
        [Decode()], [MediaIn(payload, 0.0)], info=CallInfo(encoding=encoding, sample_rate=rate)
    )
    (decoded,) = run.of(AudioIn)
    assert decoded.pcm.dtype == np.int16 and len(decoded.pcm) == len(pcm)  # type: ignore[attr-defined]
    run = await run_stages(
        [Encode()],
        [AgentAudio(decoded.pcm, turn=1, text="hi")],  # type: ignore[attr-defined]
        info=CallInfo(encoding=encoding, sample_rate=rate),
    )
    (out,) = run.of(OutputAudio)
    assert out.payload == payload  # type: ignore[attr-defined]
    assert out.duration_ms == pytest.approx(100.0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_vad_finds_onset_and_end_with_pre_roll(rate: int) -> None:
    pcm = np.concatenate([silence(0.5, rate), speech_like(1.0, rate), silence(1.0, rate)])
    vad = Vad(min_speech_ms=100, min_silence_ms=400, pre_roll_ms=200, forward_audio=False)
    run = await run_stages(
        [vad], audio_frames(pcm, rate), info=CallInfo(sample_rate=rate), frame_interval_s=0.02
    )
    (started,) = run.of(SpeechStarted)
    (ended,) = run.of(SpeechEnded)
    assert started.at_ms == pytest.approx(500, abs=40)  # type: ignore[attr-defined]
    # WebRTC VAD keeps reporting speech for ~100 ms after it stops (its own hangover).
    assert 1500 <= ended.at_ms <= 1660  # type: ignore[attr-defined]
    # pre-roll (200 ms) + 1 s speech + hangover + the silence window (400 ms)
    assert 1.6 <= len(ended.audio) / rate <= 1.78  # type: ignore[attr-defined]
    assert not run.of(AudioIn)  # forward_audio false


async def test_vad_ignores_a_click_shorter_than_min_speech() -> None:
    # WebRTC's own hangover stretches a 60 ms click to ~160 ms of "speech".
    rate = 8000
    pcm = np.concatenate([silence(0.3, rate), speech_like(0.06, rate), silence(1.0, rate)])
    run = await run_stages(
        [Vad(min_speech_ms=250)], audio_frames(pcm, rate), info=CallInfo(sample_rate=rate)
    )
    assert not run.of(SpeechStarted)
    assert len(run.of(AudioIn)) == len(audio_frames(pcm, rate))  # audio forwarded by default


async def test_vad_cuts_overlong_utterances() -> None:
    rate = 8000
    pcm = speech_like(2.5, rate)
    run = await run_stages(
        [Vad(max_utterance_ms=1000, forward_audio=False)],
        audio_frames(pcm, rate),
        info=CallInfo(sample_rate=rate),
    )
    assert len(run.of(SpeechEnded)) >= 2


async def test_vad_rejects_bad_params() -> None:
    with pytest.raises(ValueError, match="aggressiveness"):
        Vad(aggressiveness=7)


async def test_echo_plays_back_the_utterance_as_one_agent_turn() -> None:
    rate = 8000
    utterance = speech_like(0.8, rate)
    run = await run_stages(
        [Echo()], [SpeechEnded(at_ms=800, started_ms=0, audio=utterance)], info=CallInfo()
    )
    (audio,) = run.of(AgentAudio)
    assert audio.turn == 1 and audio.last  # type: ignore[attr-defined]
    np.testing.assert_array_equal(audio.pcm, utterance)  # type: ignore[attr-defined]


async def test_echo_skips_blips_and_applies_gain() -> None:
    rate = 8000
    short = SpeechEnded(at_ms=0, started_ms=0, audio=speech_like(0.05, rate))
    loud = SpeechEnded(at_ms=0, started_ms=0, audio=np.full(4000, 1000, np.int16))
    run = await run_stages([Echo(gain_db=6.0)], [short, loud], info=CallInfo())
    (audio,) = run.of(AgentAudio)
    assert int(audio.pcm[0]) == 1995  # type: ignore[attr-defined]


RECEPTIONIST = dict(
    greeting="Hello, thanks for calling. How can I help?",
    fallback="Sorry, I did not get that.",
    rules=[
        {"keywords": ["hours", "open"], "reply": "We open at nine. We close at five."},
        {"regex": r"order (?P<number>\d+)", "reply": "Order {number} has shipped."},
        {"dtmf": "1", "reply": "You pressed {digits}."},
        {"dtmf": r"\d+#", "reply": "Entry {digits_spoken}."},
        {"keywords": ["human", "agent"], "reply": "Transferring.", "action": "transfer",
         "transfer_to": "+15550100"},
        {"keywords": ["bye", "goodbye"], "reply": ["Goodbye!", "Bye now!"], "action": "hangup"},
    ],
)  # fmt: skip


async def test_rules_dialogue_greets_matches_and_falls_back() -> None:
    frames = [
        Transcript("When are you open?"),
        Transcript("where is order 42", final=True),  # {number} from the regex group
        Transcript("blah", final=False),  # interim results are not answered
        Transcript("something else"),
        Dtmf("1"),
        Dtmf("4"),
        Dtmf("2"),
        Dtmf("#"),
    ]
    run = await run_stages([RulesDialogue(**RECEPTIONIST)], frames)
    texts = [(f.turn, f.text, f.last) for f in run.of(AgentText)]  # type: ignore[attr-defined]
    assert texts == [
        (1, "Hello, thanks for calling.", False),
        (1, "How can I help?", True),
        (2, "We open at nine.", False),
        (2, "We close at five.", True),
        (3, "Order 42 has shipped.", True),
        (4, "Sorry, I did not get that.", True),
        (5, "You pressed 1.", True),
        (6, "Entry four two.", True),  # digits read one by one
    ]


async def test_rules_actions_hang_up_and_transfer() -> None:
    run = await run_stages(
        [RulesDialogue(**RECEPTIONIST)],
        [Transcript("get me a human"), Transcript("ok goodbye"), Transcript("bye")],
    )
    assert [f.to for f in run.of(Transfer)] == ["+15550100"]  # type: ignore[attr-defined]
    assert len(run.of(Hangup)) == 2
    said = [f.text for f in run.of(AgentText)]  # type: ignore[attr-defined]
    assert "Goodbye!" in said and "Bye now!" in said  # variants rotate


def test_rule_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="at least one of keywords, regex or dtmf"):
        Rule(reply="x")
    with pytest.raises(ValueError, match="invalid regular expression"):
        Rule(regex="(", reply="x")
    with pytest.raises(ValueError, match="transfer_to"):
        Rule(keywords=["a"], reply="x", action="transfer")


async def test_rules_file_is_loaded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "rules.yaml"
    path.write_text("- keywords: [parking]\n  reply: Parking is free.\n")
    run = await run_stages([RulesDialogue(rules_file=path)], [Transcript("Is there parking?")])
    assert [f.text for f in run.of(AgentText)] == ["Parking is free."]  # type: ignore[attr-defined]


async def test_vad_signals_a_pause_before_the_end_of_the_same_silence() -> None:
    rate = 8000
    pcm = np.concatenate([silence(0.3, rate), speech_like(0.8, rate), silence(1.0, rate)])
    vad = Vad(min_silence_ms=500, pause_ms=200, forward_audio=False)
    run = await run_stages(
        [vad], audio_frames(pcm, rate), info=CallInfo(sample_rate=rate), frame_interval_s=0.02
    )
    (paused,) = run.of(SpeechPaused)
    (ended,) = run.of(SpeechEnded)
    assert paused.at_ms == ended.at_ms  # type: ignore[attr-defined]
    assert run.frames.index(paused) < run.frames.index(ended)
    # The pause carries the utterance so far: shorter than the final one by 300 ms of silence.
    extra = len(ended.audio) - len(paused.audio)  # type: ignore[attr-defined]
    assert extra == pytest.approx(0.3 * rate, abs=0.02 * rate)
