"""What frames a stage needs from the stages before it, and what it adds: the order check's data.

A pipeline whose stages are out of order still loads and runs, but its calls are silent: a speaker
before the dialogue never sees a reply, a pipeline without an encoder never sends a byte. So each
stage class declares its frame flow (``Stage.consumes``, ``produces``, ``drops``), or inherits the
defaults of its ``role`` from ``ROLE_FLOWS`` below, and ``voicebridge.config`` walks the pipeline
with them when it loads a file. A stage that declares nothing is only warned about: it may do
anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicebridge.frames import (
    AgentAudio,
    AgentText,
    AudioIn,
    CallEnded,
    CallStarted,
    Dtmf,
    Frame,
    Hangup,
    MediaIn,
    OutputAudio,
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    Transcript,
    Transfer,
)

FrameTypes = tuple[type[Frame], ...]


@dataclass(frozen=True)
class StageFlow:
    """The frames one stage needs, makes and swallows.

    ``consumes``: frame types the stage cannot work without; each must be made by a stage before
    it (or by the session). ``produces``: frame types it emits that it did not receive.
    ``drops``: frame types it receives and does not pass on, so stages after it never see them;
    ``drop_hint`` says how to make it pass them on, when a parameter can.
    """

    consumes: FrameTypes = ()
    produces: FrameTypes = ()
    drops: FrameTypes = ()
    drop_hint: str = ""


# What a stage of each built-in role does with frames unless the class says otherwise. A role
# missing here ("processor", the default) has no defaults: such a stage must declare its own.
ROLE_FLOWS: dict[str, StageFlow] = {
    "decode": StageFlow(consumes=(MediaIn,), produces=(AudioIn,), drops=(MediaIn,)),
    "vad": StageFlow(consumes=(AudioIn,), produces=(SpeechStarted, SpeechPaused, SpeechEnded)),
    # Every transcriber releases its final words at the VAD's end of speech; streaming ones also
    # declare AudioIn.
    "stt": StageFlow(consumes=(SpeechEnded,), produces=(Transcript,)),
    "dialogue": StageFlow(consumes=(Transcript,), produces=(AgentText, Hangup, Transfer)),
    "tts": StageFlow(consumes=(AgentText,), produces=(AgentAudio,), drops=(AgentText,)),
    "encode": StageFlow(consumes=(AgentAudio,), produces=(OutputAudio,), drops=(AgentAudio,)),
    # A realtime voice model: hears the caller's audio, detects their turns, transcribes them
    # and answers with audio, all in one (it also says what the call itself must say).
    "speech_to_speech": StageFlow(
        consumes=(AudioIn,),
        produces=(SpeechStarted, SpeechEnded, Transcript, AgentAudio, Hangup, Transfer),
        drops=(AudioIn,),
    ),
}

# The session puts these into the pipeline, before the first stage.
SESSION_FRAMES: FrameTypes = (CallStarted, CallEnded, MediaIn, Dtmf)
# The session plays only this to the caller: a pipeline that never makes it is silent.
CALLER_HEARS: type[Frame] = OutputAudio


def declared_flow(
    role: str, consumes: FrameTypes | None, produces: FrameTypes | None, drops: FrameTypes | None
) -> StageFlow | None:
    """A stage class's flow: its own declarations over its role's defaults; None if neither."""
    base = ROLE_FLOWS.get(role)
    if base is None and consumes is None and produces is None:
        return None
    base = base or StageFlow()
    return StageFlow(
        consumes=base.consumes if consumes is None else consumes,
        produces=base.produces if produces is None else produces,
        drops=base.drops if drops is None else drops,
        drop_hint=base.drop_hint,
    )


@dataclass(frozen=True)
class FrameRole:
    """How error messages speak of one frame type, and how a pipeline usually gets it."""

    what: str  # "caller audio (AudioIn)"
    fix: str  # what to add when nothing makes it: "put a `decode` stage first"
    lost: str = ""  # what goes wrong when it is made too late: "nothing will speak the replies"


FRAME_ROLES: dict[type[Frame], FrameRole] = {
    MediaIn: FrameRole("wire audio from the call (MediaIn)", "only the session makes it"),
    AudioIn: FrameRole(
        "caller audio (AudioIn)", "put a `decode` stage first", "it will never hear the caller"
    ),
    SpeechStarted: FrameRole("speech-onset events (SpeechStarted)", "add a `vad` stage before it"),
    SpeechPaused: FrameRole("speech-pause events (SpeechPaused)", "add a `vad` stage before it"),
    SpeechEnded: FrameRole(
        "end-of-speech events (SpeechEnded)",
        "add a `vad` stage before it",
        "it will never see the caller finish speaking",
    ),
    Transcript: FrameRole(
        "caller transcripts (Transcript)",
        "add a speech-to-text stage (role stt, such as `whisper`) before it",
        "nothing will answer the caller",
    ),
    AgentText: FrameRole(
        "agent reply text (AgentText)",
        "add a dialogue stage (such as `rules` or `llm`) before it",
        "nothing will speak the replies",
    ),
    AgentAudio: FrameRole(
        "agent audio (AgentAudio)",
        "add a text-to-speech stage (role tts, such as `piper`) before it",
        "no reply reaches the caller",
    ),
    OutputAudio: FrameRole(
        "wire audio for the caller (OutputAudio)",
        "add an `encode` stage before it",
        "no reply reaches the caller",
    ),
}

# Frames that mean nothing to the session: left over at the end of the pipeline, they are
# replies the caller never hears. The value says what is missing.
UNHEARD: dict[type[Frame], str] = {
    AgentText: "add a text-to-speech stage (such as `piper`) and an `encode` stage after it",
    AgentAudio: "add an `encode` stage at the end",
}


def frame_role(kind: type[Frame]) -> FrameRole:
    """How messages name ``kind``; a custom frame type gets a plain description."""
    return FRAME_ROLES.get(kind) or FrameRole(
        f"{kind.__name__} frames", f"add a stage that makes {kind.__name__} before it"
    )
