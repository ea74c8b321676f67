"""Campaigns: call every number of a CSV file through the service, at Plivo's allowed rate.

Calls are placed with the service's ``POST /calls`` (so the service signs each row's variables
and receives Plivo's callbacks) and followed with ``GET /calls/{request_uuid}`` until Plivo's
hang-up callback says how they ended. Limits: a calls-per-second rate (Plivo allows one per
second per account by default), a number of calls in flight, and retries of busy and unanswered
numbers after a delay. Every attempt is appended to a state file before and after it is made, so
an interrupted run resumes without calling anyone twice: a number whose call was placed but not
seen to end is followed up, not dialled again.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from voicebridge.clock import Clock
from voicebridge.telephony.call_vars import InvalidVars, check_vars
from voicebridge.telephony.numbers import InvalidNumber, e164

NUMBER_COLUMNS = ("number", "to", "phone")
RETRY_STATUSES = frozenset({"busy", "no-answer"})
MAX_ROWS = 1_000_000


class CampaignError(ValueError):
    """A lead file that cannot be used; the message names the row."""


@dataclass(frozen=True)
class Lead:
    number: str
    vars: dict[str, str]
    row: int


def read_leads(path: Path) -> list[Lead]:
    """The rows of a CSV file with a ``number`` (or ``to``/``phone``) column; the other
    columns are the call's variables. A number listed twice is called once."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        number_column = next((c for c in NUMBER_COLUMNS if c in columns), None)
        if number_column is None:
            raise CampaignError(f"{path}: no number column (one of {', '.join(NUMBER_COLUMNS)})")
        leads: list[Lead] = []
        seen: set[str] = set()
        for row_number, row in enumerate(reader, start=2):
            if row_number > MAX_ROWS:
                raise CampaignError(f"{path}: more than {MAX_ROWS} rows")
            row = {str(k).strip(): (v or "").strip() for k, v in row.items() if k is not None}
            try:
                number = e164(row.pop(number_column, ""))
                call_vars = check_vars({k: v for k, v in row.items() if v})
            except (InvalidNumber, InvalidVars) as exc:
                raise CampaignError(f"{path}:{row_number}: {exc}") from None
            if number not in seen:
                seen.add(number)
                leads.append(Lead(number, call_vars, row_number))
    return leads


class ServiceCalls:
    """``CallsApi`` over HTTP: the service's ``POST /calls`` and ``GET /calls/{id}``."""

    def __init__(self, base_url: str, key: str, *, timeout_s: float = 10.0) -> None:
        import httpx

        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout_s,
        )

    async def place(self, lead: Lead) -> str:
        response = await self._client.post("/calls", json={"to": lead.number, "vars": lead.vars})
        body = response.json() if response.content else {}
        if response.status_code != 201:
            raise RuntimeError(f"HTTP {response.status_code}: {str(body.get('error', ''))[:200]}")
        return str(body["request_uuid"])

    async def outcome(self, request_uuid: str) -> Mapping[str, Any] | None:
        response = await self._client.get(f"/calls/{request_uuid}")
        if response.status_code in (404, 502, 503, 504):  # not known (yet): ask again later
            return None
        response.raise_for_status()
        found: Mapping[str, Any] = response.json()
        return found

    async def aclose(self) -> None:
        await self._client.aclose()


class CallsApi(Protocol):
    """The service's calls API as the campaign uses it."""

    async def place(self, lead: Lead) -> str:
        """Place a call; its request_uuid."""
        ...

    async def outcome(self, request_uuid: str) -> Mapping[str, Any] | None:
        """The call's outcome (``status`` ``queued`` until it ended), None if unknown."""
        ...


@dataclass(frozen=True)
class CampaignOptions:
    rate_per_s: float = 1.0
    concurrency: int = 5
    retries: int = 2  # extra attempts for busy / no-answer
    retry_delay_s: float = 300.0
    poll_s: float = 2.0
    call_timeout_s: float = 4 * 3600.0  # Plivo's default time_limit

    def __post_init__(self) -> None:
        if not self.rate_per_s > 0 or self.concurrency < 1 or self.retries < 0:
            raise ValueError("rate must be > 0, concurrency >= 1, retries >= 0")


@dataclass
class _Progress:
    attempts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)


class StateFile:
    """Append-only JSON lines: ``placed`` before waiting for a call, ``ended`` after, and
    ``result`` once a number is done. Read back to resume."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> _Progress:
        progress = _Progress()
        if not self.path.exists():
            return progress
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by the interruption
            number = entry.get("number")
            if not isinstance(number, str):
                continue
            if entry.get("event") == "placed":
                progress.attempts.setdefault(number, []).append(dict(entry))
            elif entry.get("event") == "ended" and progress.attempts.get(number):
                progress.attempts[number][-1].update(entry, event="ended")
            elif entry.get("event") == "result":
                progress.finished[number] = entry
        return progress

    def append(self, entry: Mapping[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()


class RateLimit:
    """At most ``rate_per_s`` starts per second, spaced evenly, on the given clock."""

    def __init__(self, rate_per_s: float, clock: Clock) -> None:
        self.interval = 1.0 / rate_per_s
        self.clock = clock
        self._next = float("-inf")
        self._lock = asyncio.Lock()

    async def wait(self) -> float:
        """Wait for the next slot and return its time; grants are ``interval`` apart on the
        clock by construction (read under the lock, so a later ``now()`` can't undercut it)."""
        async with self._lock:
            now = self.clock.now()
            if now < self._next:
                await self.clock.sleep(self._next - now)
                now = self.clock.now()
            self._next = now + self.interval
            return now


class Campaign:
    """Run the leads; ``on_result`` (and the results file) get one line per number."""

    def __init__(
        self,
        api: CallsApi,
        options: CampaignOptions,
        clock: Clock,
        state: StateFile,
        results: Path,
        on_result: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.api = api
        self.options = options
        self.clock = clock
        self.state = state
        self.results = results
        self.on_result = on_result
        self.rate = RateLimit(options.rate_per_s, clock)
        self.slots = asyncio.Semaphore(options.concurrency)
        self.placed_at: list[float] = []  # when each call was placed (clock time)

    async def run(self, leads: list[Lead]) -> list[dict[str, Any]]:
        progress = self.state.load()
        todo = [lead for lead in leads if lead.number not in progress.finished]
        results = await asyncio.gather(
            *(self._lead(lead, progress.attempts.get(lead.number, [])) for lead in todo)
        )
        return list(results)

    async def _lead(self, lead: Lead, earlier: list[dict[str, Any]]) -> dict[str, Any]:
        attempts = len(earlier)
        outcome: Mapping[str, Any] | None = None
        last = earlier[-1] if earlier else None
        if last is not None and last.get("event") == "placed":  # interrupted mid-call
            async with self.slots:
                outcome = await self._follow(lead, last["request_uuid"], attempts)
        elif last is not None:
            outcome = last.get("outcome")
        while outcome is None or (
            outcome.get("status") in RETRY_STATUSES and attempts <= self.options.retries
        ):
            if outcome is not None:
                await self.clock.sleep(self.options.retry_delay_s)
            attempts += 1
            async with self.slots:
                self.placed_at.append(await self.rate.wait())
                try:
                    request_uuid = await self.api.place(lead)
                except Exception as exc:  # refused: recorded, not retried (it may be the number)
                    outcome = {"status": "not_placed", "error": str(exc)[:300]}
                    self.state.append(
                        {
                            "number": lead.number,
                            "event": "placed",
                            "attempt": attempts,
                            "request_uuid": None,
                        }
                    )
                    self.state.append({"number": lead.number, "event": "ended", "outcome": outcome})
                    break
                self.state.append(
                    {
                        "number": lead.number,
                        "event": "placed",
                        "attempt": attempts,
                        "request_uuid": request_uuid,
                    }
                )
                outcome = await self._follow(lead, request_uuid, attempts)
        return self._result(lead, outcome or {}, attempts)

    async def _follow(self, lead: Lead, request_uuid: str, attempt: int) -> Mapping[str, Any]:
        """Poll the call's outcome until it ended (or the call outlived any call)."""
        deadline = self.clock.now() + self.options.call_timeout_s
        while True:
            found = await self.api.outcome(request_uuid)
            ended = found is not None and found.get("status") not in (None, "queued")
            if ended and found is not None and not found.get("report_pending"):
                outcome = dict(found)
                break
            if self.clock.now() >= deadline:
                outcome = dict(found) if ended and found else {"status": "unknown"}
                break
            await self.clock.sleep(self.options.poll_s)
        outcome.setdefault("request_uuid", request_uuid)
        self.state.append(
            {"number": lead.number, "event": "ended", "attempt": attempt, "outcome": outcome}
        )
        return outcome

    def _result(self, lead: Lead, outcome: Mapping[str, Any], attempts: int) -> dict[str, Any]:
        result = {
            "number": lead.number,
            "request_uuid": outcome.get("request_uuid"),
            "call_uuid": outcome.get("call_uuid") or None,
            "answered_by": outcome.get("answered_by"),
            "duration_s": outcome.get("duration_s"),
            "outcome": outcome.get("status"),
            "hangup_cause": outcome.get("hangup_cause") or None,
            "voicemail": bool(outcome.get("voicemail")),
            "attempts": attempts,
            # Where the call's report is: event log and recording paths, call page URL.
            "report": _report(outcome.get("report")),
        }
        with self.results.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")
        self.state.append({"event": "result", **result})
        if self.on_result is not None:
            self.on_result(result)
        return result


def _report(value: Any) -> dict[str, str]:
    """The outcome's report locations, bounded (a results line stays a line)."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k)[:32]: str(v)[:500] for k, v in list(value.items())[:8] if v}
