"""Loading a pipeline checks the order of its stages from the frames each declares it consumes,
produces and drops: a pipeline that would give silent calls fails at load, at the stage's line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from voicebridge.config import ConfigError, ConfigIssue, PipelineSpec, load_pipeline_text
from voicebridge.frames import AgentAudio, AgentText, AudioIn, SpeechEnded
from voicebridge.runtime.flow import ROLE_FLOWS
from voicebridge.runtime.registry import resolve_stage
from voicebridge.runtime.stage import Stage
from voicebridge.stages.vad import Vad, VadParams

ROOT = Path(__file__).resolve().parents[2]


class SpeechToSpeech(Stage):
    """A realtime voice model: caller audio in, agent audio out, nothing in between."""

    consumes = (AudioIn,)
    produces = (AgentAudio,)
    drops = (AudioIn,)


class StreamingStt(Stage):
    role = "stt"
    consumes = (AudioIn, SpeechEnded)


class Undeclared(Stage):
    """A custom stage that says nothing about its frames: it may do anything."""


class LateSpeaker(Stage):
    role = "tts"  # declares nothing itself: the role's defaults apply


class Shout(Stage):
    consumes = (AgentText,)
    produces = (AgentText,)


TOYS: dict[str, type[Stage]] = {
    "s2s": SpeechToSpeech,
    "streaming_stt": StreamingStt,
    "undeclared": Undeclared,
    "late_speaker": LateSpeaker,
    "shout": Shout,
}


def resolver(name: str) -> type[Stage]:
    return TOYS.get(name) or resolve_stage(name)


def pipeline(*types: str) -> str:
    return "name: p\nstages:\n" + "".join(f"  - type: {t}\n" for t in types)


def load(text: str) -> PipelineSpec:
    return load_pipeline_text(text, "p.yaml", resolver=resolver, environ={})


def errors(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return [issue for issue in info.value.issues if not issue.warning]


# Stage i of pipeline(...) is on line i + 3.
FULL = (
    "decode",
    "vad",
    "voicebridge.testing:ScriptedStt",
    "rules",
    "voicebridge.testing:ToneSpeaker",
    "encode",
)


def test_a_complete_pipeline_loads_without_warnings() -> None:
    spec = load(pipeline(*FULL))
    assert spec.warnings == []


def test_reverse_order_fails_at_every_misplaced_stage_with_its_line() -> None:
    found = errors(pipeline("encode", "piper", "rules", "whisper", "vad", "decode"))
    assert [(issue.line, issue.path) for issue in found] == [
        (3, "stages[0]"),
        (4, "stages[1]"),
        (5, "stages[2]"),
        (6, "stages[3]"),
        (7, "stages[4]"),
    ]
    messages = [issue.message for issue in found]
    assert messages[0].startswith("`encode` comes before `piper` (tts, line 4), which makes the")
    assert "agent audio (AgentAudio)" in messages[0]
    assert messages[1] == (
        "`piper` (tts) comes before `rules` (dialogue, line 5), which makes the agent reply text "
        "(AgentText) it needs: nothing will speak the replies. Move `piper` after `rules`"
    )
    assert "`whisper` (stt, line 6)" in messages[2] and "caller transcripts" in messages[2]
    assert "`vad` (line 7)" in messages[3] and "SpeechEnded" in messages[3]
    assert "`decode` (line 8)" in messages[4] and "caller audio (AudioIn)" in messages[4]


def test_a_pipeline_without_encode_fails_at_its_speaker() -> None:
    (issue,) = errors(pipeline("decode", "vad", "whisper", "rules", "piper"))
    assert str(issue) == (
        "p.yaml:7:5: stages[4]: no stage after `piper` (tts) turns its agent audio (AgentAudio) "
        "into wire audio: add an `encode` stage at the end"
    )


def test_a_speaker_before_the_dialogue_is_one_error_not_two() -> None:
    (issue,) = errors(pipeline("decode", "vad", "whisper", "piper", "rules", "encode"))
    assert issue.line == 6 and "nothing will speak the replies" in issue.message


def test_encode_before_the_speaker_says_to_move_it() -> None:
    (issue,) = errors(pipeline("decode", "vad", "whisper", "rules", "encode", "piper"))
    assert issue.line == 7
    assert issue.message.startswith("`encode` comes before `piper` (tts, line 8)")


def test_a_stage_whose_input_nothing_makes_is_told_what_to_add() -> None:
    (vad_first,) = errors(pipeline("vad", "whisper", "rules", "piper", "encode"))
    assert vad_first.line == 3
    assert vad_first.message == (
        "`vad` needs caller audio (AudioIn), but nothing before it makes it: "
        "put a `decode` stage first"
    )
    (no_vad,) = errors(pipeline("decode", "whisper", "rules", "piper", "encode"))
    assert no_vad.message == (
        "`whisper` (stt) needs end-of-speech events (SpeechEnded), but nothing before it "
        "makes it: add a `vad` stage before it"
    )


def test_a_dialogue_without_speaker_and_encoder_is_silent() -> None:
    (issue,) = errors(pipeline("decode", "vad", "whisper", "rules"))
    assert issue.line == 6 and "add a text-to-speech stage" in issue.message


def test_a_pipeline_that_never_speaks_fails_as_a_whole() -> None:
    (issue,) = errors(pipeline("decode", "vad", "whisper"))
    assert issue.path == "stages" and "every call is silent" in issue.message


def test_a_vad_that_swallows_audio_starves_a_streaming_transcriber() -> None:
    text = pipeline(*FULL).replace(
        "  - type: vad\n", "  - type: vad\n    params: {forward_audio: false}\n"
    )
    assert load(text).warnings == []  # ScriptedStt reads the VAD's utterances only
    streaming = text.replace("voicebridge.testing:ScriptedStt", "streaming_stt")
    (issue,) = errors(streaming)
    assert issue.message == (
        "`streaming_stt` (stt) needs caller audio (AudioIn), but `vad` (line 4) before it does "
        "not pass it on: set its `forward_audio: true`"
    )


def test_the_vad_flow_follows_its_forward_audio_parameter() -> None:
    assert Vad.frame_flow(VadParams(forward_audio=True)) == ROLE_FLOWS["vad"]
    swallowing = Vad.frame_flow(VadParams(forward_audio=False))
    assert swallowing is not None and swallowing.drops == (AudioIn,)


def test_a_speech_to_speech_stage_validates() -> None:
    spec = load(pipeline("decode", "s2s", "encode"))
    assert spec.warnings == []
    assert load(pipeline("decode", "vad", "echo", "encode")).warnings == []  # the built-in one


def test_a_custom_stage_with_declared_frames_is_checked() -> None:
    full = list(FULL)
    assert load(pipeline(*full[:4], "shout", *full[4:])).warnings == []
    (issue,) = errors(pipeline("decode", "shout", *full[1:]))
    assert issue.message.startswith("`shout` comes before `rules` (dialogue, line 7)")


def test_a_custom_stage_with_only_a_role_gets_the_roles_flow() -> None:
    assert LateSpeaker.frame_flow(LateSpeaker.Params()) == ROLE_FLOWS["tts"]
    (issue,) = errors(pipeline("decode", "vad", "whisper", "late_speaker", "rules", "encode"))
    assert issue.message.startswith("`late_speaker` (tts) comes before `rules`")


def test_an_undeclared_custom_stage_warns_and_says_how_to_declare() -> None:
    full = list(FULL)
    spec = load(pipeline(*full[:3], "undeclared", *full[3:]))
    (warning,) = spec.warnings
    assert warning.warning and warning.line == 6 and warning.path == "stages[3]"
    assert "`undeclared` declares no frames it consumes or produces" in warning.message
    assert "consumes = (Transcript,)" in warning.message
    assert "docs/custom-stages.md" in warning.message
    assert str(warning).startswith("p.yaml:6:5: warning: stages[3]: ")
    assert Undeclared.frame_flow(Undeclared.Params()) is None


def test_what_an_undeclared_stage_could_explain_is_only_a_warning() -> None:
    spec = load(pipeline("decode", "undeclared", "encode"))
    messages = [w.message for w in spec.warnings]
    assert len(messages) == 2
    assert "unless `undeclared` (line 4), which declares nothing, takes care of it" in messages[1]


def test_an_undeclared_stage_cannot_excuse_what_happens_after_it() -> None:
    found = errors(pipeline("decode", "vad", "whisper", "undeclared", "rules", "encode"))
    (issue,) = [i for i in found if "no stage after `rules`" in i.message]
    assert "unless" not in issue.message


def test_order_is_not_checked_while_a_stage_fails_to_load() -> None:
    with pytest.raises(ConfigError) as info:
        load(pipeline("encode", "vda", "decode"))
    (issue,) = info.value.issues
    assert "unknown stage type 'vda'" in issue.message


def test_validate_command_fails_a_reversed_pipeline_and_warns_about_undeclared(
    tmp_path: Path,
) -> None:
    reverse = tmp_path / "reverse.yaml"
    reverse.write_text(pipeline(*reversed(FULL)))
    (tmp_path / "mystage.py").write_text("from voicebridge import Stage\nclass Mine(Stage): ...\n")
    custom = tmp_path / "custom.yaml"
    custom.write_text(pipeline(*FULL[:3], "mystage:Mine", *FULL[3:]))
    # -P: the current directory is not importable, as under the installed `voicebridge` command.
    command = [sys.executable, "-P", "-m", "voicebridge.cli", "validate", str(reverse), str(custom)]
    env = {"PYTHONPATH": f"{ROOT}:{tmp_path}", "PATH": ""}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode != 0  # which code is cli.py's business; it must not be success
    tone = "`voicebridge.testing:ToneSpeaker` (tts)"
    assert f"{reverse}:4:5: stages[1]: {tone} comes before `rules` (dialogue, line 5)" in (
        done.stderr
    )
    assert f"{custom}:6:5: warning: stages[3]: `mystage:Mine` declares no frames" in done.stderr
    assert done.stdout == f"{custom}: ok (p: {' -> '.join(FULL[:3])} -> mystage:Mine -> " + (
        f"{' -> '.join(FULL[3:])})\n"
    )
