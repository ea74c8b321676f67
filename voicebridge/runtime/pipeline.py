"""The pipeline runtime: stages linked by bounded queues, each run as its own task.

Frames enter at the head (``push``), each stage's ``emit`` feeds the next stage's queue, and the
tail's output goes to the session's ``sink``. A stage that declares itself ``inline`` (its
``process`` never waits on anything but ``emit``: decode, VAD, encode) has no queue and no task:
the stage before it (or ``push``, for the first) calls it directly, which saves a queue hop and
a task switch per frame. Caller audio therefore meets its first queue after the inline stages at
the head; that queue, like the head's, never makes the socket reader wait for caller audio.

An ``observer`` sees selected frames the moment any stage emits them, so the session reacts to
speech onset without waiting for busy stages downstream (that is what makes barge-in fast).
``on_dialogue_input`` sees each transcript as the dialogue stage receives it, after every
transform on the way (what the history must record); the call's ``ctx.dialogue_input``, when
set, rewrites each final transcript just before the dialogue stage sees it (spoken digits as
digits, for every transcriber in one place). A stage that raises ends the call through
``on_error``; ``interrupt`` cancels work for stale turns without waiting for it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from voicebridge.call.context import CallContext
from voicebridge.frames import AudioIn, Frame, MediaIn, Transcript
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.stage import Stage

Sink = Callable[[Frame], Awaitable[None]]
# An observer returning False drops the frame (the session filters backchannels this way).
Observer = Callable[[Frame], bool | None]
ErrorHandler = Callable[[Stage, BaseException], None]

_STOP = object()
DROP_LOG_INTERVAL_S = 5.0  # at most one "caller_audio_dropped" line per call this often


_CALLER_AUDIO = (MediaIn, AudioIn)


class _StageQueue(asyncio.Queue[Any]):
    """A stage's queue. ``evict_audio`` drops its oldest caller audio frame, so the socket
    reader can always add a frame without waiting for a slow stage (asyncio.Queue keeps its
    items in ``_queue``, the documented hook its own subclasses use)."""

    _queue: collections.deque[Any]

    def evict_audio(self) -> bool:
        for index, item in enumerate(self._queue):
            if isinstance(item, _CALLER_AUDIO):
                del self._queue[index]
                return True
        return False


class _Runner:
    """Drives one stage: takes frames from its queue and calls ``process`` one at a time. An
    ``inline`` stage has no task: it is called directly (``calls`` counts those under way);
    a stage inline for some frame types gets those directly while it is idle."""

    __slots__ = (
        "busy",
        "busy_turn",
        "calls",
        "current",
        "dead",
        "direct",
        "free",
        "hears_caller",
        "inline",
        "interrupting",
        "queue",
        "stage",
        "task",
    )

    def __init__(self, stage: Stage, maxsize: int) -> None:
        self.stage = stage
        self.queue = _StageQueue(maxsize)
        inline = stage.inline
        self.inline = inline is True
        # The frame types called directly while the stage is idle (``Stage.inline`` types).
        self.direct: tuple[type[Frame], ...] = inline if isinstance(inline, tuple) else ()
        self.task: asyncio.Task[None] | None = None
        self.busy_turn: int | None = None
        self.busy = False  # the task is processing a frame
        self.calls = 0  # direct calls under way
        self.free: asyncio.Future[None] | None = None  # the task waits for the calls to end
        self.current: Frame | None = None  # the frame being processed, to spot pass-throughs
        self.interrupting = False
        self.hears_caller = False  # the dialogue: its transcripts are what the caller said
        self.dead = False  # the stage raised (not a provider error): it sees no more frames

    def idle(self) -> bool:
        """Nothing queued, nothing under way: a frame may be handed over directly."""
        return not (self.busy or self.calls or self.dead) and self.queue.empty()


class Pipeline:
    """Runs one call's stages. Create, ``start``, ``push`` frames, then ``stop``."""

    def __init__(
        self,
        stages: Sequence[Stage],
        ctx: CallContext,
        sink: Sink,
        *,
        observer: Observer | None = None,
        observe: tuple[type[Frame], ...] = (),
        on_error: ErrorHandler | None = None,
        on_provider_error: Callable[[Stage, ProviderError], None] | None = None,
        queue_size: int = 256,
        on_dropped: Callable[[int], None] | None = None,
        on_dialogue_input: Callable[[Transcript], None] | None = None,
        sink_accepts: tuple[type[Frame], ...] | None = None,
    ) -> None:
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.ctx = ctx
        self.stages = list(stages)
        self._sink = sink
        self._observer = observer
        self._observe = observe
        self._on_error = on_error
        self._on_provider_error = on_provider_error
        self._on_dialogue_input = on_dialogue_input
        self._runners = [_Runner(stage, queue_size) for stage in self.stages]
        self._changed = asyncio.Event()  # something that bears on ``idle`` happened
        self._idle_waiters = 0  # set _changed only while someone waits (it costs per frame)
        # The frame types the sink wants; others reaching the end are dropped there (caller
        # audio a last stage passes on would otherwise cost a sink call per frame).
        self._sink_accepts = sink_accepts
        # Whose input is "what the caller said": the dialogue stage's, else the sink's.
        roles = [stage.role for stage in self.stages]
        if "dialogue" in roles:
            self._runners[roles.index("dialogue")].hears_caller = True
        elif on_dialogue_input is not None:
            self._sink = _tapped(sink, on_dialogue_input)
            if sink_accepts is not None:
                self._sink_accepts = (*sink_accepts, Transcript)
        add_listener = getattr(ctx.clock, "add_listener", None)
        if add_listener is not None:  # a virtual clock: a stage sleeping on it may be idle
            add_listener(self.poke)
        self._head_routes: dict[type[Frame], Callable[[Frame], Awaitable[None]]] = {}
        self.dropped_frames = 0
        self._on_dropped = on_dropped
        self._drops_unlogged = 0
        self._drop_logged_at: float | None = None
        self.failed: BaseException | None = None
        self._started = False
        self._stopped = False

    # --- wiring -------------------------------------------------------------------------------
    def _emitter(self, index: int) -> Callable[[Frame], Awaitable[None]]:
        ctx = self.ctx
        observer = self._observer
        observe = self._observe
        runner = self._runners[index]
        later = self._runners[index + 1 :]
        # Inline all the way from the head: this stage runs in the socket reader's task (or
        # whoever pushed), so its caller audio must not wait for a full queue either.
        reader_side = all(r.inline for r in self._runners[: index + 1])
        routes: dict[type[Frame], Callable[[Frame], Awaitable[None]]] = {}

        def route(kind: type[Frame]) -> Callable[[Frame], Awaitable[None]]:
            """The next stage that does not pass ``kind`` through untouched, or the sink."""
            for after in later:
                if not issubclass(kind, after.stage.passthrough):
                    forward = self._forward(after, kind, reader_side)
                    break
            else:
                accepts = self._sink_accepts
                forward = self._sink if accepts is None or issubclass(kind, accepts) else _discard
            routes[kind] = forward
            return forward

        async def emit(frame: Frame) -> None:
            if ctx.is_stale(frame.turn_tag):
                return
            # The observer sees each frame once, where it is made, not at every pass-through.
            if (
                observer is not None
                and frame is not runner.current
                and isinstance(frame, observe)
                and observer(frame) is False
            ):
                return
            forward = routes.get(type(frame))
            if forward is None:
                forward = route(type(frame))
            await forward(frame)

        return emit

    async def start(self) -> None:
        """Bind and start every stage in order, then run each that is not inline in its own
        task."""
        if self._started:
            raise RuntimeError("pipeline already started")
        self._started = True
        for index, runner in enumerate(self._runners):
            runner.stage.bind(self.ctx, self._emitter(index), self._stage_failed)
        started: list[Stage] = []
        try:
            for runner in self._runners:
                await runner.stage.start()
                started.append(runner.stage)
        except BaseException:
            for stage in reversed(started):
                with contextlib.suppress(Exception):
                    await stage.stop()
            raise
        for runner in self._runners:
            if not runner.inline:
                runner.task = asyncio.get_running_loop().create_task(
                    self._run(runner), name=f"stage-{runner.stage.name}"
                )

    # --- input --------------------------------------------------------------------------------
    def _forward(
        self, runner: _Runner, kind: type[Frame], reader_side: bool
    ) -> Callable[[Frame], Awaitable[None]]:
        """How frames of ``kind`` reach ``runner``'s stage: called directly (inline), directly
        while it is idle (inline for ``kind``), or through its queue."""
        if runner.inline:
            return functools.partial(self._call, runner)
        put: Callable[[Frame], Awaitable[None]] = runner.queue.put
        if reader_side:
            put = functools.partial(self._put_from_reader, runner)
        if issubclass(kind, runner.direct):
            return functools.partial(self._call_when_idle, runner, put)
        return put

    async def push(self, frame: Frame) -> None:
        """Feed a frame to the head. Caller audio never waits: when the first queue it meets
        (the head's, or the one after the inline stages at the head) is full, the oldest queued
        caller audio is dropped (and counted) to make room, for audio and for control frames
        alike, so the socket reader is never held up by a slow stage."""
        head = self._runners[0]
        forward = self._head_routes.get(type(frame))
        if forward is None:
            forward = self._head_routes[type(frame)] = self._forward(head, type(frame), True)
        await forward(frame)

    async def _call_when_idle(
        self, runner: _Runner, put: Callable[[Frame], Awaitable[None]], frame: Frame
    ) -> None:
        """A frame of a type the stage takes inline: called directly when nothing is queued or
        under way there (so frames stay in order), else queued behind the others."""
        if runner.idle():
            await self._call(runner, frame)
        else:
            await put(frame)

    async def _put_from_reader(self, runner: _Runner, frame: Frame) -> None:
        queue = runner.queue
        if queue.full() and queue.evict_audio():
            self._dropped(runner)
        if isinstance(frame, _CALLER_AUDIO) and queue.full():
            self._dropped(runner)  # nothing older to drop: the new frame itself goes
            return
        await queue.put(frame)  # only a queue full of control frames makes this wait

    async def _call(self, runner: _Runner, frame: Frame) -> None:
        """Run an inline stage on one frame in the caller's task, as ``_run`` would in its
        own: a stage that raises is reported, and a bug (not a provider error) stops it."""
        if runner.dead or self.ctx.is_stale(frame.turn_tag):
            return
        stage = runner.stage
        if runner.hears_caller and isinstance(frame, Transcript):
            frame = self._rewrite(frame)
            self._heard(frame)
        outer = runner.current
        runner.current = frame
        runner.calls += 1
        try:
            await stage.process(frame)
        except ProviderError as exc:
            self._stage_failed(stage, exc)  # not fatal: the call goes on
        except Exception as exc:
            runner.dead = True
            self._stage_failed(stage, exc)
        finally:
            runner.current = outer
            runner.calls -= 1
            stage.active_turn = None
            free = runner.free
            if free is not None and not runner.calls:
                runner.free = None
                if not free.done():
                    free.set_result(None)
            if self._idle_waiters:
                self._changed.set()

    def _dropped(self, runner: _Runner) -> None:
        self.dropped_frames += 1
        self._drops_unlogged += 1
        if self._on_dropped is not None:
            self._on_dropped(1)
        now = self.ctx.clock.now()
        last = self._drop_logged_at
        if last is None or now - last >= DROP_LOG_INTERVAL_S:
            self._drop_logged_at = now
            self.ctx.log.warning(
                "caller_audio_dropped",
                reason="backpressure",
                dropped=self._drops_unlogged,
                dropped_total=self.dropped_frames,
                stage=runner.stage.name,
                queue_size=runner.queue.maxsize,
            )
            self._drops_unlogged = 0

    async def push_to(self, role: str, frame: Frame) -> None:
        """Feed a frame to the first stage with ``role`` (the head if there is none): what the
        session says on its own reaches the speaker even while an earlier stage is busy."""
        for runner in self._runners:
            if runner.stage.role == role:
                await self._forward(runner, type(frame), False)(frame)
                return
        await self.push(frame)

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing being processed, no background work: the call is at rest.

        The simulator's virtual-time mode waits for this before sending the next frame, so
        compute time does not leak into the call's timeline.
        """
        sleeping: set[Any] = getattr(self.ctx.clock, "sleeping", set())
        for runner in self._runners:
            if runner.calls:
                return False
            waiting_for_time = runner.busy and runner.task in sleeping
            if runner.busy and not waiting_for_time:
                return False
            if not runner.queue.empty() and not waiting_for_time:
                return False
            # A task that is done but whose done-callback has not yet removed it is no work
            # (and wait_idle would have nothing left to wake it).
            busy = (t for t in runner.stage.background_tasks if not t.done() and t not in sleeping)
            if any(busy):
                return False
        return True

    def poke(self, *_: object) -> None:
        """Something that bears on ``idle`` happened (``wait_idle`` looks again)."""
        if self._idle_waiters:
            self._changed.set()

    async def wait_idle(self) -> None:
        """Wait until the pipeline is ``idle``: woken by the changes that can make it so (a
        stage finishing a frame, a background task ending, a stage starting to sleep on a
        virtual clock), never by polling."""
        while not self.idle:
            self._changed.clear()
            tasks = [
                task
                for runner in self._runners
                for task in runner.stage.background_tasks
                if not task.done()
            ]
            for task in tasks:
                task.add_done_callback(self.poke)
            self._idle_waiters += 1
            try:
                await self._changed.wait()
            finally:
                self._idle_waiters -= 1
                for task in tasks:
                    task.remove_done_callback(self.poke)

    # --- barge-in -----------------------------------------------------------------------------
    def interrupt(self, stale: int | None = None) -> int:
        """Cancel the work in flight for every turn up to ``stale``, which the call's turns
        have already marked stale; without it, mark every turn begun so far stale first (a
        pipeline driven without a call core, as in stage tests). Returns the stale turn."""
        if stale is None:
            stale = self.ctx.turns.invalidate()
        for runner in self._runners:
            runner.stage.interrupt(stale)
            busy = runner.busy_turn
            if busy is None:
                busy = runner.stage.active_turn
            if busy is not None and busy <= stale and runner.task is not None:
                runner.interrupting = True
                runner.task.cancel()
        return stale

    # --- running ------------------------------------------------------------------------------
    async def _run(self, runner: _Runner) -> None:
        stage = runner.stage
        queue = runner.queue
        ctx = self.ctx
        while True:
            frame = await self._get(runner, queue)
            if frame is _STOP or runner.dead:
                return
            while runner.calls:  # a frame taken directly is still under way: it came first
                await self._until_free(runner)
            if ctx.is_stale(frame.turn_tag):
                continue
            runner.busy_turn = frame.turn_tag
            runner.busy = True
            if runner.hears_caller and isinstance(frame, Transcript):
                frame = self._rewrite(frame)
            runner.current = frame
            try:
                if runner.hears_caller and isinstance(frame, Transcript):
                    self._heard(frame)
                await stage.process(frame)
            except asyncio.CancelledError:
                _absorb_interrupt(runner)  # barge-in cancelled this frame's work: go on
            except ProviderError as exc:
                self._stage_failed(stage, exc)  # not fatal: the call goes on
            except Exception as exc:
                runner.dead = True
                self._stage_failed(stage, exc)
                return
            finally:
                runner.current = None
                runner.busy = False
                runner.busy_turn = None
                stage.active_turn = None
                if self._idle_waiters:
                    self._changed.set()
                # Let go of the frame before waiting for the next: an utterance's audio would
                # otherwise stay alive between turns, tens of KiB per idle call.
                frame = None

    def _rewrite(self, frame: Transcript) -> Transcript:
        rewrite = self.ctx.dialogue_input
        if rewrite is None or not frame.final:
            return frame
        try:
            return rewrite(frame)
        except Exception as exc:  # a faulty rewrite must not cost the caller their words
            self.ctx.log.error("dialogue_input_rewrite_failed", error=repr(exc)[:300])
            return frame

    def _heard(self, frame: Transcript) -> None:
        if self._on_dialogue_input is not None:
            try:
                self._on_dialogue_input(frame)
            except Exception as exc:  # reporting must not cost the caller their words
                self.ctx.log.error("dialogue_input_tap_failed", error=repr(exc)[:300])

    async def _until_free(self, runner: _Runner) -> None:
        if runner.free is None:
            runner.free = asyncio.get_running_loop().create_future()
        try:
            await asyncio.shield(runner.free)
        except asyncio.CancelledError:
            _absorb_interrupt(runner)

    async def _get(self, runner: _Runner, queue: asyncio.Queue[Any]) -> Any:
        """Wait for the next frame; a barge-in that lands while idle is simply absorbed."""
        while True:
            try:
                return await queue.get()
            except asyncio.CancelledError:
                _absorb_interrupt(runner)

    def roles(self) -> set[str]:
        return {runner.stage.role for runner in self._runners}

    def _stage_failed(self, stage: Stage, exc: BaseException) -> None:
        """A stage raised. A ``ProviderError`` is the provider's fault and ends only the turn
        (the session speaks a fallback); anything else is a bug and ends the call."""
        if isinstance(exc, ProviderError):
            if self._on_provider_error is not None:
                self._on_provider_error(stage, exc)
            return
        if self.failed is None:
            self.failed = exc
        if self._on_error is not None:
            self._on_error(stage, exc)

    async def stop(self, timeout: float = 2.0) -> None:
        """Drain nothing more: stop every stage task, then call each stage's ``stop``."""
        if self._stopped:
            return
        self._stopped = True
        for runner in self._runners:
            if runner.task is not None and not runner.task.done():
                runner.interrupting = False
                runner.task.cancel()
        tasks = [r.task for r in self._runners if r.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for runner in self._runners:
            stage = runner.stage
            try:
                await stage.cancel_tasks()
                await asyncio.wait_for(stage.stop(), timeout)
            except Exception as exc:  # a failing stop must not keep the others from stopping
                stage.ctx.log.warning("stage_stop_failed", stage=stage.name, error=repr(exc))

    async def drain(self, timeout: float = 5.0) -> None:
        """Let queued frames flow to the end (used when a call ends normally), then stop."""
        for runner in self._runners:
            if runner.task is None or runner.task.done():
                continue
            await runner.queue.put(_STOP)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(runner.task), timeout)
        await self.stop(timeout)


def _absorb_interrupt(runner: _Runner) -> None:
    """A cancellation that ``interrupt`` caused is a barge-in, not a stop: swallow it (and
    only it) so the stage's task goes on with its next frame. Call inside ``except
    CancelledError``."""
    if not runner.interrupting:
        raise asyncio.CancelledError  # a real stop (the pipeline is shutting down)
    runner.interrupting = False
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _discard(frame: Frame) -> None:
    """Where frames the sink does not want go."""


def _tapped(sink: Sink, tap: Callable[[Transcript], None]) -> Sink:
    """``sink`` that shows each transcript reaching it to ``tap`` first."""

    async def tapped(frame: Frame) -> None:
        if isinstance(frame, Transcript):
            tap(frame)
        await sink(frame)

    return tapped
