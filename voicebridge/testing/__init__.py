"""Helpers to test stages and whole calls on a virtual clock, and local fakes (Plivo's REST API,
a real ``redis-server``) for the parts that need a network."""

from voicebridge.testing.harness import (
    CallHarness,
    FailingDialogue,
    ScriptedDialogue,
    ScriptedStt,
    StageRun,
    ToneSpeaker,
    WireMessage,
    call_started,
    run_stages,
    start_message,
)

__all__ = [
    "CallHarness",
    "FailingDialogue",
    "ScriptedDialogue",
    "ScriptedStt",
    "StageRun",
    "ToneSpeaker",
    "WireMessage",
    "call_started",
    "run_stages",
    "start_message",
]
