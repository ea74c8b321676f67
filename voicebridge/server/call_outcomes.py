"""What became of each call the service placed: Plivo's hang-up callback and machine result.

Plivo posts to the call's ``hangup_url`` (our ``/hangup``) when it ends, answered or not, with
``CallStatus`` (``completed``, ``busy``, ``no-answer``, ``failed``, ``timeout``, ``cancel``),
``HangupCause``, ``Duration`` and the call's ids (Plivo's "Application" and "Call status"
pages). Kept by the ``request_uuid`` that placing the call returned, so a campaign can ask
``GET /calls/{request_uuid}`` how its call went, in a store every worker shares
(``voicebridge.server.outcome_store``). Bounded: old outcomes are forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from voicebridge.call.events import CallAnswered, CallEvent
from voicebridge.observe.recording import CallRecorder, EventLogWriter
from voicebridge.server.forms import callback_params
from voicebridge.server.outcome_store import MemoryOutcomes, OutcomeStore

log = structlog.get_logger("voicebridge.server.outcomes")

MAX_PATH_CHARS: Final = 500
REPORT_WAIT_S: Final = 30.0  # how long after the hang-up a missing report is still expected
_STATUSES: Final = frozenset({"completed", "busy", "no-answer", "failed", "timeout", "cancel"})


@dataclass
class CallOutcome:
    request_uuid: str
    call_uuid: str = ""
    status: str = "queued"  # until Plivo's hang-up callback: then one of _STATUSES
    hangup_cause: str = ""
    duration_s: float | None = None
    answered_by: str | None = None  # "human" or "machine" when machine detection ran
    voicemail: bool = False
    # Where the call's report is, once the call ended on this service: the event log and the
    # recording as written (under the service's events.dir / recording.dir), the call page.
    report: dict[str, str] = field(default_factory=dict)
    # True for a short while after an answered call's hang-up callback when its report is not
    # written yet (the stream's end and Plivo's callback race): ask again to get its paths.
    report_pending: bool = False


def _text(params: Mapping[str, Any], name: str, limit: int = 64) -> str:
    return str(params.get(name, "")).strip()[:limit]


def _request(request_uuid: str) -> str:
    return f"req-{request_uuid[:100]}"


def _call(call_uuid: str) -> str:
    return f"call-{call_uuid[:64]}"


class CallOutcomes:
    """The outcomes of placed calls, by request_uuid (and call_uuid once known), kept in an
    ``OutcomeStore`` every worker shares. A callback for a call we did not place is ignored."""

    def __init__(self, store: OutcomeStore | None = None) -> None:
        self.store: OutcomeStore = store if store is not None else MemoryOutcomes()

    async def placed(self, request_uuid: str) -> None:
        await self.store.put(_request(request_uuid), "placed", {"at": time.time()})

    async def get(self, request_uuid: str) -> CallOutcome | None:
        parts = await self.store.get(_request(request_uuid))
        if "placed" not in parts:
            return None
        outcome = CallOutcome(request_uuid)
        machine, hangup = parts.get("machine"), parts.get("hangup")
        outcome.call_uuid = str((hangup or machine or parts.get("link") or {}).get("call", ""))
        if machine is not None:
            outcome.answered_by = str(machine.get("answered_by")) or None
        if hangup is not None:
            outcome.status = str(hangup.get("status", "completed"))
            outcome.hangup_cause = str(hangup.get("cause", ""))
            duration = hangup.get("duration_s")
            outcome.duration_s = float(duration) if isinstance(duration, int | float) else None
        if outcome.call_uuid:
            call = await self.store.get(_call(outcome.call_uuid))
            outcome.voicemail = "voicemail" in call
            if outcome.answered_by is None and "machine" in call:
                outcome.answered_by = str(call["machine"].get("answered_by")) or None
            report = call.get("report", {})
            outcome.report = {str(k): str(v)[:MAX_PATH_CHARS] for k, v in report.items()}
            if hangup is not None and "streamed" in call and not outcome.report:
                at = hangup.get("at")
                outcome.report_pending = isinstance(at, int | float) and (
                    time.time() - at < REPORT_WAIT_S
                )
        return outcome

    async def _find(self, params: Mapping[str, Any]) -> str | None:
        """The request_uuid the callback is about (None: not a call we placed), remembering
        which call_uuid it became."""
        call_uuid = _text(params, "CallUUID")
        for name in ("RequestUUID", "ALegRequestUUID"):
            request_uuid = _text(params, name, 100)
            if request_uuid and "placed" in await self.store.get(_request(request_uuid)):
                if call_uuid:
                    await self.store.put(_call(call_uuid), "request", {"id": request_uuid})
                    await self.store.put(_request(request_uuid), "link", {"call": call_uuid})
                return request_uuid
        if call_uuid:
            found = (await self.store.get(_call(call_uuid))).get("request", {}).get("id")
            return str(found) if found else None
        return None

    async def machine(self, params: Mapping[str, Any]) -> None:
        """Plivo's verdict, kept by call (for the live call, whichever worker holds its
        stream: ``verdict``) and by request (for the outcome). The first one counts."""
        machine = _text(params, "Machine").lower() == "true"
        call_uuid = _text(params, "CallUUID")
        value = {"answered_by": "machine" if machine else "human", "call": call_uuid}
        if call_uuid:
            await self.store.put(_call(call_uuid), "machine", value, first=True)
        request_uuid = await self._find(params)
        if request_uuid is not None:
            await self.store.put(_request(request_uuid), "machine", value, first=True)

    async def verdict(self, call_uuid: str) -> str | None:
        """Plivo's verdict on a live call ("human" or "machine"), wherever it was posted."""
        machine = (await self.store.get(_call(call_uuid))).get("machine", {})
        found = machine.get("answered_by")
        return str(found) if found in ("human", "machine") else None

    async def voicemail_left(self, call_uuid: str) -> None:
        await self.store.put(_call(call_uuid), "voicemail", {"at": time.time()})

    async def streamed(self, call_uuid: str) -> None:
        """The call's stream started on a service that reports calls: its report will come."""
        await self.store.put(_call(call_uuid), "streamed", {"at": time.time()})

    async def call_report(self, call_uuid: str, report: Mapping[str, str]) -> None:
        """Where a call that ended here left its report (bounded), found by call_uuid."""
        bounded = {str(k)[:32]: str(v)[:MAX_PATH_CHARS] for k, v in report.items() if v}
        if call_uuid and bounded:
            await self.store.put(_call(call_uuid), "report", bounded)

    async def hung_up(self, params: Mapping[str, Any]) -> str | None:
        """Record Plivo's hang-up callback; the call's status (None for a call not ours)."""
        request_uuid = await self._find(params)
        if request_uuid is None:
            return None
        status = _text(params, "CallStatus").lower()
        try:
            duration: float | None = max(0.0, float(_text(params, "Duration")))
        except ValueError:
            duration = None
        value = {
            "status": status if status in _STATUSES else "completed",
            "cause": _text(params, "HangupCause"),
            "duration_s": duration,
            "call": _text(params, "CallUUID"),
            "at": time.time(),
        }
        await self.store.put(_request(request_uuid), "hangup", value)
        return str(value["status"])


def hangup_endpoint(outcomes: CallOutcomes) -> Callable[[Request], Awaitable[Response]]:
    """``/hangup``: Plivo's hang-up callback for the calls we placed."""

    async def hangup(request: Request) -> Response:
        params = await callback_params(request)
        try:
            status = await outcomes.hung_up(params)
        except Exception as exc:  # the store is down: Plivo retries a callback that failed
            log.warning("call_outcome_not_kept", error=repr(exc)[:200])
            return PlainTextResponse("outcome store unavailable", status_code=503)
        log.info(
            "call_outcome",
            request_uuid=_text(params, "RequestUUID") or _text(params, "ALegRequestUUID"),
            call_uuid=_text(params, "CallUUID"),
            status=status or _text(params, "CallStatus"),
            known=status is not None,
        )
        return PlainTextResponse("OK")

    return hangup


def outcome_endpoint(
    outcomes: CallOutcomes, authorised: Callable[[Request], Response | None]
) -> Callable[[Request], Awaitable[Response]]:
    """``GET /calls/{request_uuid}``: a placed call's outcome, for whoever may place calls."""

    async def outcome(request: Request) -> Response:
        refused = authorised(request)
        if refused is not None:
            return refused
        try:
            found = await outcomes.get(str(request.path_params.get("request_uuid", ""))[:100])
        except Exception as exc:  # the store is down: the caller asks again later
            log.warning("call_outcome_unreadable", error=repr(exc)[:200])
            return JSONResponse({"error": "outcome store unavailable"}, status_code=503)
        if found is None:
            return JSONResponse({"error": "no such call"}, status_code=404)
        return JSONResponse(asdict(found))

    return outcome


class ReportLocator:
    """Per-call subscriber, after the event log, the recording and the call pages' watcher: when
    the call closes, tells the outcomes where its report is, so ``GET /calls/{request_uuid}``
    and a campaign's results can name it. Paths as written (relative to where the service
    runs when ``events.dir`` / ``recording.dir`` are)."""

    def __init__(
        self,
        outcomes: CallOutcomes,
        event_log: EventLogWriter | None,
        recorder: CallRecorder | None,
        page: Callable[[], str | None],
    ) -> None:
        self.outcomes = outcomes
        self.event_log = event_log
        self.recorder = recorder
        self.page = page
        self.call_id = ""
        self._streamed: asyncio.Task[None] | None = None

    def on_event(self, event: CallEvent) -> None:
        if isinstance(event, CallAnswered) and not self.call_id:
            self.call_id = event.call_id[:64]
            marking = self.outcomes.streamed(self.call_id)
            self._streamed = asyncio.get_running_loop().create_task(marking)

    async def close(self) -> None:
        if not self.call_id:
            return
        if self._streamed is not None:  # written before the report, never after it
            with contextlib.suppress(Exception):
                await self._streamed
        report: dict[str, str] = {}
        if self.event_log is not None and self.event_log.path is not None:
            report["events"] = str(self.event_log.path)
        if self.recorder is not None and self.recorder.path is not None:
            report["recording"] = str(self.recorder.path)
        page = self.page()
        if page:
            report["page"] = page
        try:
            await self.outcomes.call_report(self.call_id, report)
        except Exception as exc:  # the store is down: the report files are there anyway
            log.warning("call_report_not_kept", error=repr(exc)[:200])
