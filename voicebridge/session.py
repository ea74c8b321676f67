"""One call's async driver: binds a ``CallCore`` to the socket, the pipeline and Plivo's REST API.

Every decision is the core's (``voicebridge.call.core``). The session carries out what the core
returns (sends, pushes, cancels stale work, calls the REST API), runs the housekeeping tick and
publishes the core's events to the call's subscribers. It reaches its socket through a
``Transport`` (``voicebridge.ports``), so the server, the simulator and the tests share it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from voicebridge.call.actions import Close, ControlCall, Interrupt, Push, SaveState, Send
from voicebridge.call.actions import StartPipeline as StartCall
from voicebridge.call.core import CallCore, CallLimits, CloseCode, Out
from voicebridge.call.events import BargeIn, CallEvent, EventBus, Subscriber, TurnCompleted
from voicebridge.clock import Clock, MonotonicClock, StreamClock
from voicebridge.config.pipeline_config import PipelineSpec
from voicebridge.frames import CallEnded, Frame, Hangup, MediaIn, Transcript, Transfer
from voicebridge.observe.call_log import CallLog
from voicebridge.observe.timeline import EventTimeline
from voicebridge.ports import StateHooks, Transport
from voicebridge.runtime.pipeline import Pipeline
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.stage import Stage
from voicebridge.runtime.ticker import Periodic
from voicebridge.telephony.call_control import CallControl, run_control

if TYPE_CHECKING:
    from voicebridge.call.context import CallContext, CallInfo
    from voicebridge.call.snapshot import CallSnapshot


class Session:
    """One Plivo stream. Feed it with ``handle_message``; end it with ``end``."""

    def __init__(
        self,
        spec: PipelineSpec,
        transport: Transport,
        *,
        clock: Clock | None = None,
        limits: CallLimits | None = None,
        stage_factory: Callable[[], list[Stage]] | None = None,
        logger: Any = None,
        record_events: bool = False,
        call_control: CallControl | None = None,
        subscribers: Sequence[Subscriber | Callable[[CallEvent], None]] = (),
        state_hooks: StateHooks | None = None,
    ) -> None:
        self.spec = spec
        self.transport = transport
        self.clock: Clock = clock or MonotonicClock()
        self.call_control = call_control
        self.state_hooks = state_hooks
        self._stage_factory = stage_factory or spec.create_stages
        self.log = logger or structlog.get_logger("voicebridge.session")
        self.bus = EventBus()
        control, settles = call_control is not None, isinstance(self.clock, StreamClock)
        self.core = CallCore(spec.session, limits, bus=self.bus, has_call_control=control)
        self.core.media_settles = settles  # virtual time: stages settle before each decision
        self.pipeline: Pipeline | None = None
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.resumed_from: CallSnapshot | None = None
        # With record_events, the call's events in order (the simulator's reports read them).
        self.timeline: EventTimeline | None = EventTimeline() if record_events else None
        self._housekeeping = Periodic(self.clock, self.core.limits.tick_s, self._tick, name="tick")
        self._tasks: set[asyncio.Task[Any]] = set()
        self._progress = asyncio.Event()  # a turn finished playing or was cut off
        self._activity: list[Callable[[], None]] = []  # see add_activity_listener
        self.bus.subscribe(CallLog(self.log))
        if self.timeline is not None:
            self.bus.subscribe(self.timeline)
        for subscriber in [*subscribers, *spec.create_subscribers()]:
            self.bus.subscribe(subscriber)
        self.bus.subscribe(lambda _: self._progress.set(), (TurnCompleted, BargeIn))

    # --- what others read ---------------------------------------------------------------------
    @property
    def ctx(self) -> CallContext | None:
        return self.core.ctx

    def subscribe(
        self,
        subscriber: Subscriber | Callable[[CallEvent], None],
        event_types: tuple[type[CallEvent], ...] | None = None,
    ) -> Callable[[], None]:
        """Receive this call's events (see ``voicebridge.call.events``); returns an
        unsubscribe function."""
        return self.bus.subscribe(subscriber, event_types)

    def add_activity_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each message handled and each message sent: a driver that
        runs a caller in step with the call (``voicebridge.sim.lockstep``) waits on it."""
        self._activity.append(listener)

    def _active(self) -> None:
        for listener in self._activity:
            listener()

    # --- carrying out what the core decided ---------------------------------------------------
    async def _apply(self, outs: Iterable[Out]) -> None:
        for out in outs:
            if isinstance(out, Push):
                if self.pipeline is None:
                    continue
                if out.role is not None:
                    await self.pipeline.push_to(out.role, out.frame)
                else:
                    await self.pipeline.push(out.frame)
                    if isinstance(out.frame, MediaIn) and self.core.media_settles:
                        await self._media_pushed()
            elif isinstance(out, Send):
                await self.transport.send_text(out.text)
                if self._activity:
                    self._active()
            elif isinstance(out, CallEvent):
                self.bus.publish(out)
            elif isinstance(out, Interrupt):
                if self.pipeline is not None:
                    self.pipeline.interrupt(out.stale_through)
            elif isinstance(out, SaveState):
                if self.state_hooks is not None and not self.core.ending:
                    self.state_hooks.changed(self)
            elif isinstance(out, ControlCall):
                self._spawn(self._control(out.action), "call_action_failed")
            elif isinstance(out, StartCall):
                await self._start(out.info)
            elif isinstance(out, Close):
                await self._finish(out)

    def _apply_now(self, outs: Sequence[Out]) -> None:
        """Carry out what a synchronous callback produced: events and saves at once, anything
        that must await in order in a task (a pipeline callback cannot await)."""
        if all(isinstance(out, CallEvent | SaveState) for out in outs):
            for out in outs:
                if isinstance(out, CallEvent):
                    self.bus.publish(out)
                elif self.state_hooks is not None and not self.core.ending:
                    self.state_hooks.changed(self)
        else:
            self._spawn(self._apply(outs), "session_action_failed")

    def _spawn(self, coro: Any, failure: str) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._task_done(t, failure))

    def _task_done(self, task: asyncio.Task[Any], failure: str) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error(failure, error=repr(task.exception())[:300])

    # --- inbound ------------------------------------------------------------------------------
    async def handle_message(self, message: str | bytes) -> None:
        """Handle one WebSocket message from Plivo. Never raises for bad input."""
        if not self.core.ending:
            now = self.clock.now()
            outs = self.core.receive(message, now)
            first = outs[0] if len(outs) == 1 else None
            # The hot path, 50 a second per call: one media frame, pushed without _apply.
            if type(first) is Push and type(first.frame) is MediaIn and self.pipeline is not None:
                await self.pipeline.push(first.frame)
                if self.core.media_settles:
                    await self._media_pushed()
            elif outs:
                await self._apply(outs)
        if self._activity:
            self._active()

    async def _media_pushed(self) -> None:  # on a stream clock: time follows the audio
        origin = self.core.origin
        if origin is not None and isinstance(self.clock, StreamClock):
            await self.clock.advance_to(origin + self.core.stream_time)
        outs = self.core.after_media(self.clock.now())
        if outs:
            await self._apply(outs)

    async def _start(self, info: CallInfo) -> None:
        self.log = self.log.bind(call_id=info.call_id, stream_id=info.stream_id)
        ctx = self.core.open_context(info, self.clock, self.log)
        snapshot = None
        if self.state_hooks is not None:
            snapshot = await self.state_hooks.on_start(self, info.call_id)
        if snapshot is not None:
            self.core.restore(snapshot)
            self.resumed_from = snapshot
        try:
            pipeline = Pipeline(
                self._stage_factory(),
                ctx,
                self._sink,
                observer=self._observe,
                observe=CallCore.OBSERVED,
                on_error=self._stage_failed,
                on_provider_error=self._provider_failed,
                on_dropped=lambda count: self._apply_now(self.core.dropped(count)),
                on_dialogue_input=self._caller_said,
                sink_accepts=CallCore.OUTPUT,
            )
            await pipeline.start()
        except Exception as exc:
            await self._apply(self.core.pipeline_failed(str(exc) or repr(exc)))
            return
        self.pipeline = pipeline
        outs = self.core.pipeline_started(pipeline.roles(), self.clock.now(), snapshot)
        self._housekeeping.start()
        await self._apply(outs)

    # --- what the pipeline says ---------------------------------------------------------------
    def _observe(self, frame: Frame) -> bool | None:
        keep = self.core.observe(frame, self.clock.now())
        self._apply_now(self.core.drain())
        return None if keep else False

    def _caller_said(self, frame: Transcript) -> None:
        self._apply_now(self.core.caller_said(frame, self.clock.now()))

    async def _sink(self, frame: Frame) -> None:
        outs = self.core.output(frame, self.clock.now())
        if outs:
            await self._apply(outs)

    def _provider_failed(self, stage: Stage, exc: ProviderError) -> None:
        self._apply_now(self.core.provider_failed(stage.role, exc, self.clock.now()))

    def _stage_failed(self, stage: Stage, exc: BaseException) -> None:
        self._apply_now(self.core.stage_failed(stage.name, repr(exc)))

    async def _control(self, action: Hangup | Transfer) -> None:
        """Plivo's REST API hangs up or transfers; the core hears how it went."""
        ctx = self.core.ctx
        assert self.call_control is not None and ctx is not None
        outcome, error = await run_control(
            self.call_control, ctx.info.call_id, action, self.core.limits
        )
        await self.decide(lambda t: self.core.control_done(action, t, outcome=outcome, error=error))

    # --- the agent speaking on its own --------------------------------------------------------
    async def say(self, text: str, *, then: Hangup | None = None, direct: bool = False) -> bool:
        """Speak ``text`` through the pipeline's speaker as a new turn; False if none."""
        outs = await self.decide(lambda now: self.core.say(text, now, then=then, direct=direct))
        return any(isinstance(out, Push) for out in outs)

    async def decide(self, decision: Callable[[float], Sequence[Out]]) -> Sequence[Out]:
        """Carry out what the core decides now (``core.release_output`` and the like)."""
        await self._apply(outs := decision(self.clock.now()))
        return outs

    def _tick(self) -> Coroutine[Any, Any, None] | None:  # housekeeping, every tick_s
        outs = self.core.tick(self.clock.now())
        return self._apply(outs) if outs else None

    # --- resuming after a dropped socket ------------------------------------------------------
    def suspendable(self, close_code: int | None) -> bool:
        """The socket went away mid-call without anyone ending the call: Plivo may come back."""
        return self.pipeline is not None and self.core.suspendable(close_code)

    def snapshot(self, *, epoch: int | None = None) -> CallSnapshot | None:
        """The call's resumable state now (``CallCore.snapshot``)."""
        return self.core.snapshot(self.clock.now(), epoch=epoch)

    # --- ending -------------------------------------------------------------------------------
    async def wait_played(self, turn: int) -> None:
        """Wait until ``turn`` has played to its end, been cut off, or the call ended."""
        while not self.core.turn_settled(turn):
            self._progress.clear()
            await self._progress.wait()

    async def end(
        self, reason: str, *, code: int = CloseCode.NORMAL, close_reason: str | None = None
    ) -> None:
        """End the call: stop the pipeline, close the socket. Safe to call more than once."""
        outs = self.core.end(reason, code=code, close_reason=close_reason or reason)
        if not outs:
            await self.ended.wait()
            return
        await self._apply(outs)

    async def _finish(self, close: Close) -> None:
        self.end_reason = close.reason
        self._progress.set()  # wake a goodbye waiting to be played: it never will be
        self._housekeeping.stop()
        if self.pipeline is not None:
            with contextlib.suppress(Exception):
                await self.pipeline.push(CallEnded(close.reason))
            await self.pipeline.stop()
        with contextlib.suppress(Exception):
            await self.transport.close(close.code, close.close_reason)
        self._apply_now(self.core.finished(close.reason))
        await self.bus.close()
        self.ended.set()
        self._active()
