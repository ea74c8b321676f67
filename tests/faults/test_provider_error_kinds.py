"""Provider faults on the call's own clock (issue 7): every error kind from every provider role,
slow providers and providers that never answer.

These test today's behaviour for survival and isolation, not exact timings (retries, fillers and
a circuit breaker may change what is said and when): a failed transcriber or dialogue is
followed by the pipeline's fallback line and the call goes on to answer the next line; a failed
speaker loses that audio only; a slow dialogue's reply still arrives; a dialogue that never
answers does not stop the call from hearing DTMF or ending cleanly, with no task left, and a
call beside it hears exactly what it hears alone.
"""

from __future__ import annotations

import asyncio
import typing
from typing import Any

import pytest
from structlog.testing import capture_logs

from voicebridge.config import load_pipeline_text
from voicebridge.frames import AgentAudio, AgentText, Frame, Transcript
from voicebridge.runtime.providers import ErrorKind, ProviderError
from voicebridge.runtime.stage import Stage, StageParams
from voicebridge.sim.signals import speech_like
from voicebridge.testing.harness import CallHarness

FALLBACK = "Sorry, a fault here."
KINDS: list[str] = list(typing.get_args(ErrorKind))


def pipeline(think_s: float = 0.0) -> Any:
    return load_pipeline_text(f"""
name: faults
session: {{chunk_ms: 100, max_lead_ms: 400, fallback_text: "{FALLBACK}"}}
stages:
  - type: decode
  - type: vad
    params: {{min_speech_ms: 60, min_silence_ms: 300, pre_roll_ms: 100, forward_audio: false}}
  - type: voicebridge.testing:ScriptedStt
    params: {{lines: ["first line", "second line", "third line"]}}
  - type: voicebridge.testing:ScriptedDialogue
    params: {{greeting: "Hi.", reply: "Noted.", think_s: {think_s}}}
  - type: voicebridge.testing:ToneSpeaker
    params: {{ms_per_char: 20}}
  - type: encode
""")


class FaultParams(StageParams):
    kind: str = "unavailable"
    times: int = 1  # fail this many matching frames, then pass them on


class _Fault(Stage):
    """Passes frames on, except that the first ``times`` frames of type ``target`` (after the
    greeting) raise the provider error a real stage of this role would raise."""

    Params = FaultParams
    target: type[Frame] = Frame

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.failed = 0

    def matches(self, frame: Frame) -> bool:
        return isinstance(frame, self.target)

    async def process(self, frame: Frame) -> None:
        if self.matches(frame) and self.failed < self.params.times:
            self.failed += 1
            kind: Any = self.params.kind
            raise ProviderError(self.name, "fake-provider", kind, "injected fault", status=503)
        await self.emit(frame)


class FaultyStt(_Fault):
    type_name = "faulty_stt"
    role = "stt"

    def matches(self, frame: Frame) -> bool:
        return isinstance(frame, Transcript) and frame.final


class FaultyDialogue(_Fault):
    type_name = "faulty_dialogue"
    role = "dialogue"

    def matches(self, frame: Frame) -> bool:
        return isinstance(frame, AgentText) and frame.turn > 1 and frame.text != FALLBACK


class FaultyTts(_Fault):
    type_name = "faulty_tts"
    role = "tts"

    def matches(self, frame: Frame) -> bool:
        return isinstance(frame, AgentAudio) and frame.turn > 1


AFTER = {"stt": (FaultyStt, 2), "dialogue": (FaultyDialogue, 3), "tts": (FaultyTts, 4)}


def with_fault(spec: Any, role: str, kind: str) -> Any:
    cls, after = AFTER[role]

    def stages() -> list[Stage]:
        made = spec.create_stages()
        made.insert(after + 1, cls(FaultParams(kind=kind)))
        return made

    return stages


def spoken(call: CallHarness) -> list[str]:
    return [e["text"] for e in call.timeline("agent_text")]


def played(call: CallHarness) -> list[str]:
    return [e["text"] for e in call.timeline("played")]


async def caller_says(call: CallHarness) -> None:
    await call.speak(speech_like(0.6, call.rate))
    await call.idle(2.5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", ["stt", "dialogue", "tts"])
async def test_each_provider_error_kind_leaves_the_call_going(role: str, kind: str) -> None:
    spec = pipeline()
    with capture_logs() as logs:
        async with CallHarness(spec, stage_factory=with_fault(spec, role, kind)) as call:
            await call.idle(1.0)
            await caller_says(call)  # this turn meets the fault
            await caller_says(call)  # and this one must be answered as usual
            assert not call.session.ended.is_set()
            errors = call.timeline("provider_error")
            assert [(e["error_kind"], e["provider"]) for e in errors] == [(kind, "fake-provider")]
            if role == "tts":
                # The speaker failed: nothing can be said for that turn, the next one is heard.
                assert FALLBACK not in spoken(call)
                assert played(call)[-1] == "Noted."
            else:
                assert FALLBACK in played(call)  # the caller heard the fallback, not dead air
                assert played(call)[-1] == "Noted."  # then the next line was answered
    failures = [e for e in logs if e["log_level"] == "error" and e["event"] != "provider_error"]
    assert failures == []
    assert [e["error_kind"] for e in logs if e["event"] == "provider_error"] == [kind]


async def test_a_slow_dialogue_still_answers_and_the_call_survives() -> None:
    async with CallHarness(pipeline(think_s=4.0)) as call:
        await call.idle(5.0)  # the greeting itself takes 4 s to come
        assert played(call) == ["Hi."]
        await call.speak(speech_like(0.6, call.rate))
        await call.idle(2.0)  # the reply is still being thought about: silence, no crash
        assert played(call) == ["Hi."] and not call.session.ended.is_set()
        await call.idle(4.0)
        # The session covered the wait with its fillers (docs/resilience.md), then the reply came.
        assert played(call) == ["Hi.", "One moment.", "Still working on it.", "Noted."]
        assert not call.session.ended.is_set()
        assert call.session.ctx is not None  # fillers are not part of the conversation
        assert [h.text for h in call.session.ctx.history if h.role == "agent"] == ["Hi.", "Noted."]


class StalledDialogue(Stage):
    """A dialogue whose provider never answers: every transcript waits forever."""

    type_name = "stalled_dialogue"
    role = "dialogue"

    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        if isinstance(frame, Transcript) and frame.final:
            await asyncio.Event().wait()


class StuckCallHarness(CallHarness):
    """A harness that does not wait for the pipeline to go idle after each frame (a stalled
    stage never does); only the call beside it is compared message for message."""

    async def _settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)


def stalled(spec: Any) -> Any:
    def stages() -> list[Stage]:
        made = spec.create_stages()
        made[3] = StalledDialogue()
        return made

    return stages


async def run_clean_call(spec: Any) -> list[tuple[float, str]]:
    async with CallHarness(spec) as call:
        await call.idle(1.0)
        await caller_says(call)
        await caller_says(call)
    return [(m.t, str(m.message)) for m in call.log]


async def test_a_stalled_dialogue_neither_blocks_its_call_nor_disturbs_another() -> None:
    spec = pipeline()
    alone = await run_clean_call(spec)
    tasks_before = len(asyncio.all_tasks())
    stuck = StuckCallHarness(spec, stage_factory=stalled(spec))
    neighbour = CallHarness(spec)
    await stuck.start()
    await neighbour.start()
    # Interleaved, frame by frame: the stuck call's caller speaks and waits; its dialogue hangs.
    for _ in range(50):
        await stuck.frame()
        await neighbour.frame()
    speech = speech_like(0.6, 8000)
    for offset in range(0, len(speech), 160):
        await stuck.frame(speech[offset : offset + 160])
        await neighbour.frame(speech[offset : offset + 160])
    for _ in range(125):
        await stuck.frame()
        await neighbour.frame()
    await stuck.send({"event": "dtmf", "dtmf": {"digit": "7"}})
    await neighbour.speak(speech)
    await neighbour.idle(2.5)
    assert [e["text"] for e in stuck.timeline("caller_said")] == ["first line"]  # it stalled
    assert stuck.timeline("dtmf")[0]["digit"] == "7"  # the stuck call still takes input
    # The stalled dialogue never said anything; the session filled the silence ...
    assert played(stuck) == ["One moment."]
    assert not stuck.session.ended.is_set()  # ... but the call is alive
    await stuck.session.end("caller hung up")
    await neighbour.session.end("test over")
    assert [(m.t, str(m.message)) for m in neighbour.log] == alone
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) <= tasks_before  # the stalled work was cancelled
