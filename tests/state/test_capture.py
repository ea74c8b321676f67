"""What a snapshot says the caller heard and is still owed, at the moments that make it hard:
mid-piece, after a barge-in, during a false interruption's resume. A real ``Session`` on its
stream clock (``CallHarness``); the snapshot is taken as if the socket dropped that instant."""

from __future__ import annotations

from typing import Any

from voicebridge.call.snapshot import CallSnapshot
from voicebridge.config import load_pipeline_text
from voicebridge.sim.signals import speech_like
from voicebridge.testing.harness import CallHarness

GREETING = "Hello and welcome to the test line. We are glad you called today."
REPLY = "Sure, go ahead. Take your time."


def pipeline(lines: list[str]) -> Any:
    return load_pipeline_text(f"""
name: capture-test
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
    params: {{greeting: {GREETING!r}, reply: {REPLY!r}}}
  - type: voicebridge.testing:ToneSpeaker
  - type: encode
""")


def snap(call: CallHarness) -> CallSnapshot:
    snapshot = call.session.snapshot()
    assert snapshot is not None
    return CallSnapshot.from_json(snapshot.to_json())  # what another worker would read


def agent_text(snapshot: CallSnapshot, turn: int) -> str:
    return next(h.text for h in snapshot.history if h.role == "agent" and h.turn == turn)


async def test_mid_piece_heard_and_owed_split_the_reply_at_a_word() -> None:
    async with CallHarness(pipeline([])) as call:
        await call.idle(0.92)  # 18.4 characters played by estimate: "Hello and welcome"
        snapshot = snap(call)
        assert agent_text(snapshot, 1) == "Hello and welcome"
        assert [(p.turn, p.text) for p in snapshot.pending] == [
            (1, "to the test line. We are glad you called today.")
        ]
        assert snapshot.turn == 1 and snapshot.epoch == 0 and not snapshot.suspended


async def test_nothing_owed_once_the_reply_played() -> None:
    async with CallHarness(pipeline([])) as call:
        await call.idle(4.0)
        snapshot = snap(call)
        assert snapshot.pending == [] and agent_text(snapshot, 1) == GREETING
        assert snapshot.completed_turn == 1


async def test_a_barged_in_reply_is_not_owed_but_the_answer_is() -> None:
    async with CallHarness(pipeline(["hold on"])) as call:
        await call.idle(0.92)
        await call.speak(speech_like(1.0, call.rate))
        while not call.session.core.ledger.pending:  # the answer starts playing
            await call.frame()
        await call.idle(0.5)
        snapshot = snap(call)
        assert snapshot.history[0].interrupted  # the greeting, cut off: not re-spoken
        assert [p.turn for p in snapshot.pending] == [2]
        heard = agent_text(snapshot, 2).split()
        assert heard + snapshot.pending[0].text.split() == REPLY.split()
        assert snapshot.stale_through == 1


async def test_a_drop_during_a_false_interruptions_resume_owes_the_rest() -> None:
    async with CallHarness(pipeline([""])) as call:  # a cough: no words
        await call.idle(0.92)
        await call.speak(speech_like(0.35, call.rate))
        while not call.timeline("continued"):
            await call.frame()
        await call.idle(0.3)
        snapshot = snap(call)
        assert [p.turn for p in snapshot.pending] == [1]  # owed for the greeting's entry
        heard = agent_text(snapshot, 1).split()
        assert heard + snapshot.pending[0].text.split() == GREETING.split()


async def test_a_pending_hang_up_is_kept() -> None:
    async with CallHarness(pipeline(["goodbye"])) as call:
        await call.idle(4.0)
        await call.speak(speech_like(0.6, call.rate))
        while call.session.core.pending_action is None:
            await call.frame()
        snapshot = snap(call)
        assert snapshot.action is not None and snapshot.action.kind == "hangup"
        assert snapshot.pending_text == "Goodbye."
