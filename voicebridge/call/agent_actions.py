"""What a call core does on its own account: hang up or transfer once the last words played,
answer provider failures and late replies (``ReplyWatch``'s decisions), and reprompt a silent
caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from voicebridge.call.actions import ControlCall, Interrupt
from voicebridge.call.events import (
    FillerSpoken,
    HangupFailed,
    HungUp,
    IdleGoodbye,
    ProviderDown,
    ProviderFailed,
    ReplyTimedOut,
    Reprompted,
    RepromptUnavailable,
    StageFailed,
    TransferFailed,
    Transferred,
    TransferUnavailable,
)
from voicebridge.call.held_output import HeldOutput
from voicebridge.call.reply_watch import AbandonReply, Decision, GiveUp, SayFallback, SayFiller
from voicebridge.call.state import CloseCode, Out
from voicebridge.frames import Hangup, Transfer


class ProviderFailure(Protocol):
    """What the core reads of a provider failure (``voicebridge.runtime.ProviderError``)."""

    @property
    def stage(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> int | str | None: ...
    @property
    def provider_message(self) -> str: ...
    @property
    def circuit_open(self) -> bool: ...
    @property
    def voice_lost(self) -> bool: ...


class AgentActions(HeldOutput):
    """Hang-ups, transfers, fallbacks and reprompts."""

    # --- hanging up and transferring --------------------------------------------------------------
    def request_action(self, action: Hangup | Transfer) -> Sequence[Out]:
        """Hang up or transfer once what was already said has played."""
        self.pending_action = action
        self._maybe_act()
        return self._take()

    def _maybe_act(self) -> None:
        action = self.pending_action
        if action is None or self._acting or self.ending or self.outbox or self.ledger.pending:
            return
        if not self.has_call_control:
            if isinstance(action, Transfer):
                self._emit(TransferUnavailable(self._t(), action.to, "no Plivo credentials"))
                self.pending_action = None
            else:  # closing the stream ends the call (keepCallAlive)
                self._close(f"hangup:{action.reason}", close_reason="agent hung up")
            return
        self._acting = True
        self._out.append(ControlCall(action))

    def control_done(
        self,
        action: Hangup | Transfer,
        now: float,
        *,
        outcome: str | None = None,
        error: str | None = None,
    ) -> Sequence[Out]:
        """The REST hang-up or transfer asked for with ``ControlCall`` finished (``outcome``)
        or failed (``error``)."""
        if isinstance(action, Transfer):
            if error is not None:
                self._emit(TransferFailed(self._t(), action.to, error[:300]))
                self.pending_action = None
                self._acting = False
                self._say(self.options.fallback_text, now)
                return self._take()
            self._emit(Transferred(self._t(), action.to))
            self._close("transferred", close_reason="call transferred")
            return self._take()
        self.rest_hangup(outcome=outcome, error=error)  # the close below ends the stream anyway
        self._close(f"hangup:{action.reason}", close_reason="agent hung up")
        return self._take()

    def rest_hangup(self, *, outcome: str | None = None, error: str | None = None) -> Sequence[Out]:
        """A REST hang-up finished (``outcome``) or failed (``error``)."""
        if error is not None:
            self._emit(HangupFailed(self._t(), error[:300]))
        elif outcome is not None:
            self._emit(HungUp(self._t(), outcome))
        return self._take() if not self._acting else []

    def forget_pending_action(self) -> None:
        """The service is going away: a hang-up or transfer still waiting to play is moot."""
        self.pending_action = None

    # --- failures and late replies ----------------------------------------------------------------
    def provider_failed(self, role: str, error: ProviderFailure, now: float) -> Sequence[Out]:
        """A provider let the stage of ``role`` down: one event, then the fallback line (or a
        goodbye when it stays down), not dead air."""
        self.stats.provider_errors += 1
        self._emit(
            ProviderFailed(
                self._t(),
                error.stage,
                error.provider,
                error.kind,
                error.status,
                error.provider_message[:300],
            )
        )
        if not self.ending:
            decisions = self.replies.provider_failed(
                speaker_failed=role == "tts" or error.voice_lost, circuit_open=error.circuit_open
            )
            self._decide(decisions, now)
        return self._take()

    def stage_failed(self, stage: str, error: str) -> Sequence[Out]:
        self._emit(StageFailed(self._t(), stage, error[:300]))
        self._close(
            "stage_failed", code=CloseCode.INTERNAL_ERROR, close_reason=f"stage {stage} failed"
        )
        return self._take()

    def _decide(self, decisions: list[Decision], now: float) -> None:
        for decision in decisions:
            if isinstance(decision, SayFiller):
                turn = self._say(decision.text, now, direct=True, filler=True)
                if turn is not None:
                    self._emit(FillerSpoken(self._t(), turn, decision.text, decision.waited_s))
            elif isinstance(decision, AbandonReply):
                self._emit(ReplyTimedOut(self._t(), decision.waited_s))
                # The late reply must not follow the apology: cancel it as a barge-in would.
                self._out.append(Interrupt(self.turns.invalidate()))
            elif isinstance(decision, SayFallback):
                self._say(self.options.fallback_text, now, direct=True)
            elif isinstance(decision, GiveUp):
                self._emit(ProviderDown(self._t(), decision.why, decision.failed_turns))
                hangup = Hangup(reason="provider_down")
                spoken = decision.can_speak and self._say(
                    self.options.replies.goodbye_text, now, then=hangup, direct=True
                )
                if spoken is None or spoken is False:
                    # Nothing can be said (the speaker is what failed): hang up now.
                    self.pending_action = hangup
                    self._maybe_act()

    # --- a silent caller --------------------------------------------------------------------------
    def _caller_active(self, now: float) -> None:
        self._last_activity_s = self.call_time(now)
        self.reprompts = 0

    def _idle_check(self, now: float) -> None:
        wait = self.options.idle_reprompt_s
        if not wait or self._caller_speaking or self._agent_active(now) or self.pending_action:
            return
        t = self.call_time(now)
        if t - self._last_activity_s < wait:
            return
        self._last_activity_s = t
        if self.reprompts < self.options.idle_reprompts:
            self.reprompts += 1
            self.stats.reprompts += 1
            self._emit(Reprompted(self._t(), self.reprompts))
            if self._say(self.options.reprompt_text, now) is None:
                self._emit(RepromptUnavailable(self._t(), "the pipeline has no tts stage"))
            return
        self._emit(IdleGoodbye(self._t(), self.reprompts))
        if self._say(self.options.idle_goodbye_text, now, then=Hangup(reason="idle")) is None:
            self._close("idle", close_reason="caller idle")
