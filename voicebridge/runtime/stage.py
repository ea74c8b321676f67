"""The Stage base class: one job in a pipeline, as a small async object.

A stage is instantiated once per call with validated parameters, bound to the call's context by the
pipeline, and then sees every frame that reaches it through ``process``. It emits frames downstream
with ``emit``. Frames a stage does not handle must be passed on (the default ``process`` does that),
so a pipeline can be extended by inserting stages anywhere.

Writing one::

    class Shout(Stage):
        type_name = "shout"
        role = "processor"
        description = "Upper-cases every agent reply."
        consumes = (AgentText,)  # so loading a pipeline checks it comes after a dialogue
        produces = (AgentText,)

        class Params(StageParams):
            suffix: str = "!"

        async def process(self, frame: Frame) -> None:
            if isinstance(frame, AgentText):
                frame = replace(frame, text=frame.text.upper() + self.params.suffix)
            await self.emit(frame)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from voicebridge.call.context import CallContext
from voicebridge.frames import Frame
from voicebridge.runtime.flow import StageFlow, declared_flow

Emit = Callable[[Frame], Awaitable[None]]


class StageParams(BaseModel):
    """Base of every stage's parameter model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StageError(Exception):
    """A stage failed in a way that ends its call; the message names the stage and the cause."""


class Stage:
    """Base class of every stage. Subclasses set the class attributes and override hooks."""

    type_name: ClassVar[str] = ""
    role: ClassVar[str] = "processor"
    description: ClassVar[str] = ""
    Params: ClassVar[type[StageParams]] = StageParams
    # Frame types this stage never looks at and would only pass on. The pipeline hands them
    # straight to the next stage that wants them (or to the session), saving a queue hop and a
    # task switch per frame: caller audio is 50 frames a second per call, and a dialogue or TTS
    # stage has no use for it. Such frames may overtake frames still queued in this stage.
    passthrough: ClassVar[tuple[type[Frame], ...]] = ()
    # True for a stage whose ``process`` never waits on anything but ``emit`` (no I/O, no
    # sleep, no model run on the loop): the pipeline then calls it directly from the stage
    # before it (the first stage: from the socket reader) instead of giving it a queue and a
    # task, saving a queue hop and a task switch per frame. Work that waits goes in ``spawn``.
    # A tuple of frame types: ``process`` never waits for those (a transcriber buffering
    # caller audio); they are handed over directly while the stage is idle (nothing queued,
    # nothing under way), and the stage keeps its queue and task for the rest.
    inline: ClassVar[bool | tuple[type[Frame], ...]] = False
    # The frames this stage needs from the stages before it (``consumes``), emits itself
    # (``produces``) and does not pass on (``drops``). Loading a pipeline walks them to catch
    # stages in an order that cannot work. None takes the ``role``'s defaults
    # (voicebridge.runtime.flow.ROLE_FLOWS); a "processor" that declares neither consumes nor
    # produces is only warned about.
    consumes: ClassVar[tuple[type[Frame], ...] | None] = None
    produces: ClassVar[tuple[type[Frame], ...] | None] = None
    drops: ClassVar[tuple[type[Frame], ...] | None] = None

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        if params is None:
            params = self.Params(**kwargs)
        elif kwargs:
            raise TypeError("pass either a Params instance or keyword parameters, not both")
        self.params: Any = params
        self.name: str = self.type_name or type(self).__name__
        self._ctx: CallContext | None = None
        self._emit: Emit | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_task_error: Callable[[Stage, BaseException], None] | None = None
        # The agent turn this stage is working on right now; barge-in cancels that work.
        self.active_turn: int | None = None

    @classmethod
    def frame_flow(cls, params: StageParams) -> StageFlow | None:
        """What the pipeline check assumes this stage does with frames; None: it cannot tell.

        Override it when a parameter changes the flow (the VAD's ``forward_audio``).
        """
        return declared_flow(cls.role, cls.consumes, cls.produces, cls.drops)

    # --- process-wide set-up ----------------------------------------------------------------
    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """Load what every call shares (a model, a voice) once, at service start-up."""

    # --- binding ------------------------------------------------------------------------------
    def bind(
        self,
        ctx: CallContext,
        emit: Emit,
        on_task_error: Callable[[Stage, BaseException], None] | None = None,
    ) -> None:
        """Attach the stage to a call; done by the pipeline before ``start``."""
        self._ctx = ctx
        self._emit = emit
        self._on_task_error = on_task_error

    @property
    def ctx(self) -> CallContext:
        if self._ctx is None:
            raise RuntimeError(f"stage {self.name!r} is not bound to a call yet")
        return self._ctx

    @property
    def log(self) -> Any:
        return self.ctx.log.bind(stage=self.name)

    # --- lifecycle hooks ----------------------------------------------------------------------
    async def start(self) -> None:
        """Called once before the first frame (open provider streams here)."""

    async def process(self, frame: Frame) -> None:
        """Handle one frame. The default passes it on unchanged."""
        await self.emit(frame)

    async def stop(self) -> None:
        """Called once after the last frame; close what ``start`` opened."""

    def interrupt(self, stale_through: int) -> None:
        """Barge-in: drop any buffered work for turns up to ``stale_through``.

        Work running inside ``process`` for a stale turn is cancelled by the pipeline; this hook is
        for state a stage keeps between frames (buffers, background tasks).
        """

    # --- helpers for subclasses ---------------------------------------------------------------
    async def emit(self, frame: Frame) -> None:
        if self._emit is None:
            raise RuntimeError(f"stage {self.name!r} is not bound to a pipeline")
        await self._emit(frame)

    def begin_turn(self) -> int:
        """Start a new agent reply; work for it is cancelled if the caller interrupts it."""
        turn = self.ctx.begin_turn()
        self.active_turn = turn
        return turn

    def spawn(
        self, coro: Coroutine[Any, Any, Any], *, name: str | None = None
    ) -> asyncio.Task[Any]:
        """Run background work owned by this stage; a failure is reported to the call."""
        task = asyncio.get_running_loop().create_task(coro, name=name or f"{self.name}-task")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    @property
    def has_background_work(self) -> bool:
        return bool(self._tasks)

    @property
    def background_tasks(self) -> set[asyncio.Task[Any]]:
        return self._tasks

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._on_task_error is not None:
            self._on_task_error(self, exc)

    async def cancel_tasks(self) -> None:
        """Cancel and await every background task this stage spawned."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
