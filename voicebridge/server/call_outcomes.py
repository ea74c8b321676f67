"""What became of each call the service placed: Plivo's hang-up callback and machine result.

Plivo posts to the call's ``hangup_url`` (our ``/hangup``) when it ends, answered or not, with
``CallStatus`` (``completed``, ``busy``, ``no-answer``, ``failed``, ``timeout``, ``cancel``),
``HangupCause``, ``Duration`` and the call's ids (Plivo's "Application" and "Call status"
pages). Kept here by the ``request_uuid`` that placing the call returned, so a campaign can ask
``GET /calls/{request_uuid}`` how its call went. Bounded: the oldest outcomes are forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from voicebridge.server.forms import callback_params

log = structlog.get_logger("voicebridge.server.outcomes")

MAX_OUTCOMES: Final = 50_000
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


def _text(params: Mapping[str, Any], name: str, limit: int = 64) -> str:
    return str(params.get(name, "")).strip()[:limit]


class CallOutcomes:
    """The outcomes of placed calls, by request_uuid (and call_uuid once known)."""

    def __init__(self, max_outcomes: int = MAX_OUTCOMES) -> None:
        self._by_request: OrderedDict[str, CallOutcome] = OrderedDict()
        self._request_of_call: dict[str, str] = {}
        self.max_outcomes = max_outcomes

    def placed(self, request_uuid: str) -> None:
        self._by_request[request_uuid] = CallOutcome(request_uuid)
        while len(self._by_request) > self.max_outcomes:
            _, old = self._by_request.popitem(last=False)
            self._request_of_call.pop(old.call_uuid, None)

    def get(self, request_uuid: str) -> CallOutcome | None:
        return self._by_request.get(request_uuid)

    def _find(self, params: Mapping[str, Any]) -> CallOutcome | None:
        for name in ("RequestUUID", "ALegRequestUUID"):
            outcome = self._by_request.get(_text(params, name))
            if outcome is not None:
                call_uuid = _text(params, "CallUUID")
                if call_uuid:
                    outcome.call_uuid = call_uuid
                    self._request_of_call[call_uuid] = outcome.request_uuid
                return outcome
        request = self._request_of_call.get(_text(params, "CallUUID"))
        return self._by_request.get(request) if request else None

    def machine(self, params: Mapping[str, Any]) -> None:
        outcome = self._find(params)
        if outcome is not None and outcome.answered_by is None:
            machine = _text(params, "Machine").lower() == "true"
            outcome.answered_by = "machine" if machine else "human"

    def voicemail_left(self, call_uuid: str) -> None:
        request = self._request_of_call.get(call_uuid)
        if request and request in self._by_request:
            self._by_request[request].voicemail = True

    def hung_up(self, params: Mapping[str, Any]) -> CallOutcome | None:
        outcome = self._find(params)
        if outcome is None:
            return None
        status = _text(params, "CallStatus").lower()
        outcome.status = status if status in _STATUSES else "completed"
        outcome.hangup_cause = _text(params, "HangupCause")
        try:
            outcome.duration_s = max(0.0, float(_text(params, "Duration")))
        except ValueError:
            outcome.duration_s = None
        return outcome


def hangup_endpoint(outcomes: CallOutcomes) -> Callable[[Request], Awaitable[Response]]:
    """``/hangup``: Plivo's hang-up callback for the calls we placed."""

    async def hangup(request: Request) -> Response:
        params = await callback_params(request)
        outcome = outcomes.hung_up(params)
        log.info(
            "call_outcome",
            request_uuid=_text(params, "RequestUUID") or _text(params, "ALegRequestUUID"),
            call_uuid=_text(params, "CallUUID"),
            status=outcome.status if outcome else _text(params, "CallStatus"),
            known=outcome is not None,
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
        found = outcomes.get(str(request.path_params.get("request_uuid", ""))[:100])
        if found is None:
            return JSONResponse({"error": "no such call"}, status_code=404)
        return JSONResponse(asdict(found))

    return outcome
