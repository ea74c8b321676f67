"""The benchmarks' service process: a server in a child process on a loopback port, talking to
the benchmark in JSON lines.

Why a child process: the service gets its own interpreter (its own GIL and event loop, pinned
to a core of its own when ``taskset`` exists), so the simulated callers in the parent do not
take its CPU, and its CPU time and memory can be read from ``/proc`` apart from theirs.

The protocol is one JSON object per line on the child's stdout; its logs go to stderr, which is
appended to a log file. The child says ``{"type": "ready", "port": ...}`` once it takes calls,
then whatever the benchmark reports (``session`` timelines, ``stats``, ``call`` probes, ``lag``).
The parent stops it by closing its stdin; it is terminated, then killed, only if it lingers.

Parent side: :class:`ServiceProcess`. Child side: :func:`child_service` (the real service,
``running_service`` as ``voicebridge serve`` runs it, on 127.0.0.1 port 0), :func:`emit`, and
:class:`SessionReports` (each call's event timeline, sent when the call ends).

Only the standard library is imported here at load time: ``--help`` stays fast, and a child's
start-up time is measured without voicebridge's imports in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STDOUT_LIMIT = 64 * 1024 * 1024  # one line may carry a whole call's timeline
STOP_TERMINATE_S = 5.0  # after terminate, how long before kill

Message = dict[str, Any]


# --- the child's side ---------------------------------------------------------------------------


def emit(kind: str, **fields: Any) -> None:
    """One line of the child-to-parent protocol on stdout (logs go to stderr)."""
    sys.stdout.write(json.dumps({"type": kind, **fields}, default=str) + "\n")
    sys.stdout.flush()


class ChildService:
    """The service running in this child process, and when to stop it."""

    def __init__(self, svc: Any, stop: asyncio.Event, lifetime_s: float) -> None:
        self.svc = svc
        self._stop = stop
        self._deadline = asyncio.get_running_loop().time() + lifetime_s

    @property
    def port(self) -> int:
        return int(self.svc.port)

    @property
    def stopping(self) -> bool:
        """The parent closed our stdin, or our lifetime is over."""
        return self._stop.is_set() or asyncio.get_running_loop().time() >= self._deadline

    def ready(self, **fields: Any) -> None:
        """Tell the parent we take calls: our port, the cores we may run on, and ``fields``."""
        emit("ready", port=self.port, affinity=sorted(os.sched_getaffinity(0)), **fields)

    async def wait(self, timeout_s: float | None = None) -> None:
        """Until the parent stops us or our lifetime ends (or ``timeout_s`` passes)."""
        left = self._deadline - asyncio.get_running_loop().time()
        if timeout_s is not None:
            left = min(left, timeout_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), max(left, 0.0))


@contextlib.asynccontextmanager
async def child_service(
    spec: Any,
    lifetime_s: float,
    *,
    max_calls: int | None = None,
    max_pending: int | None = None,
    **options: Any,
) -> AsyncIterator[ChildService]:
    """The real service (``running_service``, as ``voicebridge serve`` runs it) on 127.0.0.1
    port 0, in this child process. It is to stop when the parent closes our stdin, or after
    ``lifetime_s`` whatever happens (see :meth:`ChildService.wait`). ``options`` go to
    ``running_service`` (``record_events``, ``on_session``). ``max_pending`` raises the caps
    on sockets waiting for their ``start`` (in total and per peer): a load generator is one
    peer standing in for the many media servers of a real deployment, and opens hundreds of
    streams in seconds."""
    from voicebridge.config import ServiceSettings
    from voicebridge.server.run import running_service

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()  # a thread: a blocking read works for every kind of stdin
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    caps: dict[str, Any] = {"max_calls": max_calls} if max_calls else {}
    if max_pending:
        caps |= {"max_pending_streams": max_pending, "max_pending_per_peer": max_pending}
    limits: dict[str, Any] = {"limits": caps} if caps else {}
    # The load generators stream straight to /stream (no /answer per call): tokens off, as
    # for every figure in bench/RESULTS.md before tokens were on by default.
    # VOICEBRIDGE_STATE (a redis:// URL) puts the calls' resumable state in Redis, as a
    # deployment with workers does: each call's snapshot is saved there as it changes.
    state = os.environ.get("VOICEBRIDGE_STATE", "memory")
    settings = ServiceSettings(
        host="127.0.0.1", port=0, state=state, security={"stream_token": "off"}, **limits
    )
    options.setdefault("freeze_gc", True)  # as `voicebridge serve` runs it
    async with running_service(settings, spec, **options) as svc:
        yield ChildService(svc, stop, lifetime_s)


class StampedTimeline:
    """A call's events (``CallEvent.as_dict``) with the wall clock of each, as a subscriber.

    The event's ``t`` is stream time (audio received), good to 20 ms; the wall clock
    (CLOCK_MONOTONIC, shared by every process on the machine) gives the compute time of each
    stage, including any wait for a worker thread, and compares with the parent's own clock.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def on_event(self, event: Any) -> None:
        item = event.as_dict()
        item["wall"] = time.monotonic()
        self.events.append(item)


class SessionReports:
    """Each call's event timeline, stamped with the wall clock, sent to the parent as
    ``{"type": "session", "stream_id", "events", ...}`` when the call ends.

    Pass ``on_session`` to ``child_service``; ``report(session, events)`` picks what to send
    of a session (default: all its events).
    """

    def __init__(
        self, report: Callable[[Any, list[dict[str, Any]]], dict[str, Any]] | None = None
    ) -> None:
        self._report = report or (lambda session, events: {"events": events})
        self._watchers: set[asyncio.Task[None]] = set()

    def on_session(self, session: Any) -> None:
        timeline = StampedTimeline()
        session.subscribe(timeline)
        task = asyncio.get_running_loop().create_task(self._send(session, timeline))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _send(self, session: Any, timeline: StampedTimeline) -> None:
        await session.ended.wait()
        stream_id = session.ctx.info.stream_id if session.ctx else None
        emit("session", stream_id=stream_id, **self._report(session, timeline.events))

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) for the reports of the calls that have ended but are not sent yet."""
        if self._watchers:
            await asyncio.wait(self._watchers, timeout=timeout_s)


# --- the parent's side --------------------------------------------------------------------------


def child_env(*, inherit_pythonpath: bool = True) -> dict[str, str]:
    """Our environment with this checkout first on PYTHONPATH, so the child runs the same
    voicebridge. Without ``inherit_pythonpath`` the checkout is all it gets: another
    framework's venv must not see the packages on our paths."""
    env = dict(os.environ)
    paths = [str(REPO)]
    if inherit_pythonpath:
        paths += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


class ServiceProcess:
    """A server in a child process that speaks the protocol above: its port, its messages, and
    its end. ``last`` keeps the latest message of each type; ``on_message`` sees them all;
    ``session`` timelines are kept for :meth:`events_for`."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        log_path: Path,
        *,
        pinned: bool,
        spawned: float,
        stop_grace_s: float,
        on_message: Callable[[Message], None] | None,
    ) -> None:
        self.proc = proc
        self.log_path = log_path
        self.pinned = pinned
        self.spawned = spawned  # time.monotonic() just before the spawn
        self.ready: Message = {}  # the message that said it was ready
        self.ready_at = 0.0  # time.monotonic() when that message came
        self.last: dict[str, Message] = {}
        self._stop_grace_s = stop_grace_s
        self._on_message = on_message
        self._sessions: dict[str, list[Message]] = {}
        self._arrived = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        command: Sequence[str],
        log_path: Path,
        *,
        pin: bool = False,
        nice: int = 0,
        env: dict[str, str] | None = None,
        ready_type: str = "ready",
        ready_timeout_s: float = 60.0,
        stop_grace_s: float = 15.0,
        on_message: Callable[[Message], None] | None = None,
    ) -> ServiceProcess:
        """Spawn ``command`` in the checkout (stderr appended to ``log_path``, environment
        :func:`child_env` unless ``env``) and wait for its ``ready_type`` message, at most
        ``ready_timeout_s`` for each line. ``pin`` runs it on core 0 when ``taskset`` exists;
        ``nice`` at that niceness. A child that fails to start is stopped."""
        argv = list(command)
        pinned = pin and shutil.which("taskset") is not None
        if pinned:
            argv = ["taskset", "-c", "0", *argv]
        if nice:
            argv = ["nice", "-n", str(nice), *argv]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            spawned = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env if env is not None else child_env(),
                cwd=str(REPO),
                limit=STDOUT_LIMIT,
            )
        service = cls(
            proc,
            log_path,
            pinned=pinned,
            spawned=spawned,
            stop_grace_s=stop_grace_s,
            on_message=on_message,
        )
        try:
            service.ready = await service._wait_for(ready_type, ready_timeout_s)
        except BaseException:
            await service.stop()
            raise
        service.ready_at = time.monotonic()
        service._reader = asyncio.get_running_loop().create_task(service._read())
        return service

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def port(self) -> int:
        return int(self.ready["port"])

    @property
    def affinity(self) -> list[int]:
        """The cores the child said it may run on."""
        return list(self.ready.get("affinity") or [])

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    async def _wait_for(self, kind: str, timeout_s: float) -> Message:
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
            if not raw:
                raise RuntimeError(f"the child exited while starting; see {self.log_path}")
            message = json.loads(raw)
            if message.get("type") == kind:
                return dict(message)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                message = json.loads(raw)
            except ValueError:
                continue
            kind = message.get("type")
            self.last[kind] = message
            if kind == "session" and message.get("stream_id"):
                async with self._arrived:
                    self._sessions[message["stream_id"]] = message.get("events") or []
                    self._arrived.notify_all()
            if self._on_message is not None:
                self._on_message(message)

    async def events_for(self, stream_id: str, timeout_s: float = 15.0) -> list[Message]:
        """The timeline the child reported for one call (empty if it never came)."""
        async with self._arrived:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: stream_id in self._sessions), timeout_s
                )
            return self._sessions.pop(stream_id, [])

    async def stop(self) -> None:
        """Close its stdin (the stop signal); terminate, then kill, only if it lingers."""
        proc = self.proc
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), self._stop_grace_s)
        except TimeoutError:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TERMINATE_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
