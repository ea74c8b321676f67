"""Who a call is between, as ``/answer`` learnt it, for the post-call webhook.

Plivo's answer request names the numbers (``From``, ``To``) and the ``Direction``; the stream's
``start`` does not. ``/answer`` remembers them here by ``CallUUID`` and the call's reporter reads
them when the call ends. Bounded: at most ``max_calls`` calls, each kept ``ttl_s``; values are
cut to what a phone number or SIP URI needs. In one process only: with ``serve --workers N`` a
stream that lands on another worker than its ``/answer`` reports the numbers as unknown (null).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

_PARTY: Final = re.compile(r"[A-Za-z0-9+@:._\-]{1,128}")
_DIRECTIONS: Final = ("inbound", "outbound")


class CallParties:
    """CallUUID -> ``{"from", "to", "direction"}`` (what is known), newest last."""

    def __init__(
        self,
        max_calls: int = 10_000,
        ttl_s: float = 6 * 3600,
        *,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_calls = max_calls
        self.ttl_s = ttl_s
        self.time_fn = time_fn
        self._calls: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()

    def remember(self, call_uuid: str, params: Mapping[str, object]) -> None:
        """Keep the answer request's ``From``, ``To`` and ``Direction`` for ``call_uuid``."""
        if not call_uuid or len(call_uuid) > 128:
            return
        parties: dict[str, str] = {}
        for param, key in (("From", "from"), ("To", "to")):
            value = str(params.get(param, "")).strip()
            if _PARTY.fullmatch(value):
                parties[key] = value
        direction = str(params.get("Direction", "")).strip().lower()
        if direction in _DIRECTIONS:
            parties["direction"] = direction
        now = self.time_fn()
        self._calls.pop(call_uuid, None)
        self._calls[call_uuid] = (now, parties)
        while len(self._calls) > self.max_calls:
            self._calls.popitem(last=False)
        while self._calls:
            first = next(iter(self._calls.values()))
            if now - first[0] <= self.ttl_s:
                break
            self._calls.popitem(last=False)

    def get(self, call_uuid: str) -> dict[str, str] | None:
        found = self._calls.get(call_uuid)
        if found is None or self.time_fn() - found[0] > self.ttl_s:
            return None
        return dict(found[1])
