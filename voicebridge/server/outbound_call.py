"""An outbound call's answer to Plivo's machine detection, on the live session.

Plivo posts its asynchronous result to ``/machine`` while the call runs; the service hands it to
the call's ``MachineHandling``. On a person (``on_human: continue``) the call goes on. On a
machine, ``on_machine: hangup`` ends the call, and ``on_machine: voicemail`` listens to the
callee's audio (``voicebridge.call.voicemail``) and speaks the voicemail once, after the beep or
the greeting's end, then hangs up; the machine hears nothing else of the agent.

The verdict comes seconds into the call, while the agent would already greet. With
``greeting: wait_for_verdict`` (the default) the agent's audio is held from the start
(``CallCore.hold_output``) and let out at the first of: the verdict "person"; the callee's short
utterance then a pause (a person's "Hello?", answered at once); ``hold_s`` without a verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final

import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from voicebridge.audio.codec import codec_for
from voicebridge.call.actions import Push
from voicebridge.call.events import (
    CallAnswered,
    CallerAudio,
    CallEvent,
    CallFinished,
    SpeechBegan,
    SpeechFinished,
)
from voicebridge.call.outbound_options import OutboundOptions
from voicebridge.call.state import Out
from voicebridge.call.voicemail import VoicemailTiming
from voicebridge.frames import Hangup
from voicebridge.server.call_outcomes import CallOutcomes
from voicebridge.server.forms import callback_params
from voicebridge.telephony.call_request import MachineDetection
from voicebridge.text import fill_vars

if TYPE_CHECKING:
    from voicebridge.session import Session

log = structlog.get_logger("voicebridge.server.outbound")

VERDICT_POLL_S: Final = 0.25  # how often a live call looks for a verdict another worker got
VERDICT_GRACE_S: Final = 5.0  # after machine_detection.time_ms, how long a verdict may still come


class MachineHandling:
    """Subscribed to one session's caller audio from its creation (so the call core emits it)."""

    def __init__(
        self,
        session: Session,
        options: OutboundOptions,
        on_voicemail: Callable[[str], Awaitable[None]] | None = None,
        verdicts: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        self.session = session
        self._on_voicemail = on_voicemail  # told the call id once the voicemail was spoken
        self.options = options
        self.result: str | None = None  # "human" or "machine" once Plivo said
        self.timing: VoicemailTiming | None = None
        self.voicemail_spoken = False
        # Why the held greeting was let out: "human", "hello", "no_verdict", "resumed".
        self.released: str | None = None
        self.holding = options.greeting == "wait_for_verdict"
        self._speech_from: float | None = None
        self._verdicts = verdicts  # the shared outcomes: a verdict another worker received
        self._timeout: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        session.subscribe(self._on_audio, (CallerAudio,))
        session.subscribe(self._on_call, (CallAnswered, SpeechBegan, SpeechFinished, CallFinished))
        if self.holding:
            session.core.hold_output()

    def _on_call(self, event: CallEvent) -> None:
        if isinstance(event, CallFinished):
            for task in (self._timeout, self._watch):
                if task is not None:
                    task.cancel()
        elif isinstance(event, CallAnswered):
            if event.epoch == 0 and self._verdicts is not None:
                self._watch = self._spawn(self._watch_verdict(event.call_id[:64]))
            if event.epoch > 0:  # a resumed stream: the first one heard the verdict
                self._release("resumed")
            elif self.holding:
                self._timeout = self._spawn(self._hold_timeout())
        elif isinstance(event, SpeechBegan):
            self._speech_from = event.at
        elif isinstance(event, SpeechFinished):
            began, self._speech_from = self._speech_from, None
            if began is not None and event.at - began <= self.options.hello_max_s:
                self._release("hello")  # a person's "Hello?": answer it now

    async def _watch_verdict(self, call_id: str) -> None:
        """With several workers, Plivo's ``/machine`` may reach one that does not hold this
        call's stream: it keeps the verdict in the shared outcomes, read here every
        ``VERDICT_POLL_S`` until a verdict came (by either path) or could still come."""
        assert self._verdicts is not None
        clock = self.session.clock
        until = clock.now() + self.options.machine_detection.time_ms / 1000.0 + VERDICT_GRACE_S
        while self.result is None and clock.now() < until:
            await clock.sleep(VERDICT_POLL_S)
            try:
                found = await self._verdicts(call_id)
            except Exception as exc:  # the store is down: the timeout still lets the greeting out
                log.debug("verdict_unreadable", error=repr(exc)[:200])
                continue
            if found is not None and self.result is None:
                self.machine_result(found == "machine")

    async def _hold_timeout(self) -> None:
        await self.session.clock.sleep(self.options.hold_s)
        if self.result is None:
            self._release("no_verdict")

    def _release(self, why: str) -> None:
        if not self.holding:
            return
        self.holding = False
        self.released = why
        log.info("greeting_released", why=why)
        self._spawn(self._decide(self.session.core.release_output))

    def machine_result(self, is_machine: bool) -> None:
        """Plivo's answer; only the first one counts."""
        if self.result is not None:
            return
        self.result = "machine" if is_machine else "human"
        log.info("machine_detection", result=self.result, on_machine=self.options.on_machine)
        if not is_machine:
            self._release("human")
            return
        # A machine hears nothing of the agent but the voicemail: what it may have started
        # (after a short "hello" or speak_at_once) stops, and nothing more is let out.
        spoke = not self.holding
        self.holding = False
        self.session.core.hold_output()
        if spoke:
            self._spawn(self._decide(self.session.core.silence_agent))
        if self.options.on_machine == "hangup":
            self._spawn(self._hang_up())
            return
        fmt = self.session.core.format
        rate = fmt.sample_rate if fmt is not None else 8000
        self.timing = VoicemailTiming(
            rate, beep_wait_s=self.options.beep_wait_s, silence_s=self.options.silence_s
        )

    def _on_audio(self, event: CallEvent) -> None:
        if not isinstance(event, CallerAudio):
            return
        timing, fmt = self.timing, self.session.core.format
        if timing is None or fmt is None or self.voicemail_spoken:
            return
        pcm = codec_for(fmt.encoding).decode(event.payload)
        timing.audio(pcm, event.at_s)
        if timing.decide(event.at_s + len(pcm) / fmt.sample_rate) == "speak":
            self.voicemail_spoken = True
            self._spawn(self._leave_voicemail(timing.reason or ""))

    async def _leave_voicemail(self, reason: str) -> None:
        ctx = self.session.ctx
        text = fill_vars(self.options.voicemail, ctx.info.vars if ctx else {})
        log.info("voicemail_started", after=reason)
        said = await self.session.decide(
            lambda now: self.session.core.say_only(text, now, then=Hangup("voicemail"))
        )
        if not any(isinstance(out, Push) for out in said):
            await self.session.end("voicemail_no_speaker")
        elif self._on_voicemail is not None and ctx is not None:
            try:
                await self._on_voicemail(ctx.info.call_id)
            except Exception as exc:  # the outcome store is down: the call is done anyway
                log.warning("voicemail_outcome_not_kept", error=repr(exc)[:200])

    async def _hang_up(self) -> None:
        session, ctx = self.session, self.session.ctx
        if session.call_control is not None and ctx is not None:
            try:
                await session.call_control.hangup(ctx.info.call_id)
            except Exception as exc:  # the stream's close below still ends our side
                log.warning("machine_hangup_failed", error=str(exc)[:200])
        await session.end("answering_machine")

    async def _decide(self, decision: Callable[[float], Sequence[Out]]) -> None:
        await self.session.decide(decision)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def machine_detection_for(options: OutboundOptions | None, url: str) -> MachineDetection | None:
    """The Call API's machine detection fields for a pipeline's ``outbound:`` section (None
    without one), with Plivo's result posted to ``url`` (the service's ``/machine``)."""
    if options is None:
        return None
    md = options.machine_detection
    return MachineDetection(
        mode="true",
        time_ms=md.time_ms,
        maximum_speech_length_ms=md.maximum_speech_length_ms,
        initial_silence_ms=md.initial_silence_ms,
        url=url,
    )


def machine_endpoint(
    find: Callable[[str], MachineHandling | None], outcomes: CallOutcomes | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """``/machine``: Plivo's asynchronous machine detection result (``Machine``, ``CallUUID``;
    Plivo's "Asynchronous machine detection" page), delivered to the live call."""

    async def machine(request: Request) -> Response:
        params = await callback_params(request)
        if outcomes is not None:
            try:
                await outcomes.machine(params)
            except Exception as exc:  # the live call below still gets the verdict
                log.warning("machine_outcome_not_kept", error=repr(exc)[:200])
        call_uuid = str(params.get("CallUUID", ""))[:64]
        is_machine = str(params.get("Machine", "")).strip().lower() == "true"
        handling = find(call_uuid) if call_uuid else None
        if handling is None:
            log.info("machine_detection_no_call", call_uuid=call_uuid, machine=is_machine)
            return PlainTextResponse("no live call with this CallUUID", status_code=404)
        handling.machine_result(is_machine)
        return PlainTextResponse("OK")

    return machine
