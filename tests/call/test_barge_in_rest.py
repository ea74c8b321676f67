"""The barge-in policy at rest (no caller speech, no interruption awaiting its verdict) can only
say NONE, which is what lets the call core skip it on the caller's silent frames."""

from __future__ import annotations

from voicebridge.call.barge_in import BargeInPolicy, Verdict
from voicebridge.call.options import BargeInOptions


def test_at_rest_only_without_speech_or_a_pending_verdict() -> None:
    policy = BargeInPolicy(BargeInOptions(guard_ms=200))
    assert policy.at_rest
    assert policy.decide(1000.0, agent_active=True) is Verdict.NONE
    policy.speech_started(1000.0)
    assert not policy.at_rest
    assert policy.decide(1100.0, agent_active=True) is Verdict.NONE  # within the guard
    assert policy.decide(1200.0, agent_active=True) is Verdict.CLEAR
    policy.speech_ended(1500.0)
    # Cleared, and waiting to learn whether it was a false interruption: not at rest yet.
    assert not policy.at_rest
