"""Outbound calls without a phone: a simulated carrier that plays each dialled call into the
service, with a simulated callee (a person, an answering machine, no answer, busy).

``SimulatedCarrier`` is the local Plivo REST fake that, once a call is created, does what Plivo
would: a busy or unanswered number gets its hang-up callback straight away; an answered one
fetches the answer URL, opens the stream it names and plays the callee's audio into it, posts
the machine detection result when the call asked for it, and posts the hang-up callback when the
call ends. A machine plays a greeting, a beep, then silence; a person says a few words.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html import unescape
from typing import Any, Literal

import httpx
import numpy as np
from starlette.responses import Response

from voicebridge.frames import PCM
from voicebridge.plivo.formats import StreamFormat
from voicebridge.session import Session
from voicebridge.sim.caller import PlivoCaller
from voicebridge.sim.lockstep import SessionWatch
from voicebridge.sim.signals import silence, speech_like
from voicebridge.testing.plivo_rest_fake import FakePlivoRest

CalleeKind = Literal["person", "machine", "no_answer", "busy"]
RATE = 8000
_STREAM = re.compile(r"<Stream[^>]*>([^<]+)</Stream>")


def beep(freq: float, seconds: float, rate: int = RATE) -> PCM:
    t = np.arange(round(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def callee_audio(kind: CalleeKind, rate: int = RATE) -> PCM:
    """What the callee sends: a machine's greeting, beep and silence; a person's "hello"."""
    if kind == "machine":
        parts = [speech_like(2.0, rate), silence(0.2, rate), beep(1000, 0.4, rate)]
        return np.concatenate([*parts, silence(4.0, rate)])
    return np.concatenate([silence(0.3, rate), speech_like(0.8, rate), silence(2.0, rate)])


@dataclass
class PlayedCall:
    """One call as the carrier played it."""

    number: str
    kind: CalleeKind
    request_uuid: str
    call_uuid: str
    status: str = "queued"
    duration_s: float = 0.0


@dataclass(eq=False)
class SimulatedCarrier(FakePlivoRest):
    """``FakePlivoRest`` whose created calls ring a simulated callee. ``callee`` maps a number
    (as Plivo spells it: digits) to its kind; ``speed`` is how much faster than real time the
    callee's audio is streamed."""

    callee: Callable[[str], CalleeKind] = field(default=lambda number: "person")
    speed: float = 1.0
    # With a service in this process (``SessionWatch`` as its ``on_session``): each callee runs
    # in lockstep with its call, as fast as computing allows and without racing it.
    sessions: SessionWatch | None = None
    played: list[PlayedCall] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._tasks: set[asyncio.Task[None]] = set()

    def _create(self, fields: dict[str, Any]) -> Response:
        response = super()._create(fields)
        if response.status_code == 201:
            request_uuid = self.created_calls[-1].request_uuid
            task = asyncio.get_running_loop().create_task(self._ring(request_uuid, fields))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return response

    async def __aenter__(self) -> SimulatedCarrier:
        await self.start()
        return self

    async def settle(self) -> None:
        """Wait until every call placed so far has been played to its end."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await super().stop()

    async def _ring(self, request_uuid: str, fields: Mapping[str, Any]) -> None:
        number = str(fields["to"])
        kind = self.callee(number)
        call = PlayedCall(number, kind, request_uuid, str(uuid.uuid4()))
        self.played.append(call)
        ids = {"RequestUUID": request_uuid, "CallUUID": call.call_uuid, "To": number}
        ids.update({"From": str(fields["from"]), "Direction": "outbound"})
        async with httpx.AsyncClient(timeout=30) as client:
            if kind in ("busy", "no_answer"):
                call.status = "busy" if kind == "busy" else "no-answer"
                cause = "USER_BUSY" if kind == "busy" else "NO_ANSWER"
                await self._hangup(client, fields, ids, call, cause)
                return
            self.add_call(call.call_uuid)
            answer = await client.post(str(fields["answer_url"]), data=ids)
            found = _STREAM.search(answer.text)
            if answer.status_code != 200 or found is None:
                call.status = "failed"
                await self._hangup(client, fields, ids, call, "INVALID_ANSWER_XML")
                return
            detect = bool(fields.get("machine_detection_url"))
            told: list[bool] = []

            async def before_frame(caller: PlivoCaller) -> None:
                # Plivo's result is delivered before the callee's first frame, so what the
                # service does with it does not depend on how fast this machine runs.
                if detect and not told:
                    told.append(True)
                    await self._detect(client, fields, ids, kind == "machine")
                if self.sessions is not None:
                    await self.sessions.lockstep(caller, lambda: self._session_of(call.call_uuid))

            caller = PlivoCaller(
                unescape(found.group(1)).strip(),
                StreamFormat.from_short("l16", RATE),
                speed=float("inf") if self.sessions is not None else self.speed,
                call_id=call.call_uuid,
                probe=before_frame,
            )
            with contextlib.suppress(Exception):
                await caller.run(callee_audio(kind), tail_s=1.0, wait_for_agent_s=8.0)
            call.status = "completed"
            call.duration_s = caller.record.duration_s
            self.end_call(call.call_uuid)
            await self._hangup(client, fields, ids, call, "NORMAL_CLEARING")

    def _session_of(self, call_uuid: str) -> Session | None:
        for session in self.sessions.all if self.sessions is not None else []:
            if session.ctx is not None and session.ctx.info.call_id == call_uuid:
                return session
        return None

    async def _detect(
        self,
        client: httpx.AsyncClient,
        fields: Mapping[str, Any],
        ids: dict[str, str],
        machine: bool,
    ) -> None:
        """Plivo's asynchronous result, posted once the call's stream is live (retried while
        the service does not know the call yet, for at most 5 s)."""
        data = {**ids, "Machine": "true" if machine else "false", "Event": "MachineDetection"}
        for _ in range(500):
            response = await client.post(str(fields["machine_detection_url"]), data=data)
            if response.status_code == 200:
                return
            await asyncio.sleep(0.01)

    async def _hangup(
        self,
        client: httpx.AsyncClient,
        fields: Mapping[str, Any],
        ids: dict[str, str],
        call: PlayedCall,
        cause: str,
    ) -> None:
        url = fields.get("hangup_url")
        if not url:
            return
        data = {**ids, "CallStatus": call.status, "HangupCause": cause}
        data["Duration"] = f"{call.duration_s:.0f}"
        await client.post(str(url), data=data)
