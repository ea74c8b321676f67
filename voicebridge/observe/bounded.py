"""Values from the wire, cut to a size a log line can carry.

A caller (or an attacker) chooses checkpoint names, headers and words; a log line must never grow
with them. Strings are cut (their length is kept in the marker), collections are cut to a few
items, recursively.
"""

from __future__ import annotations

from typing import Any

MAX_CHARS = 200
MAX_ITEMS = 20


def bounded(value: Any, limit: int = MAX_CHARS) -> Any:
    """``value`` with every string cut to ``limit`` characters and every collection to
    ``MAX_ITEMS`` items."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"{value[:limit]}…[{len(value)} chars]"
    if isinstance(value, dict):
        items = list(value.items())
        out = {bounded(str(k), 64): bounded(v, limit) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["…"] = f"{len(items)} items"
        return out
    if isinstance(value, list | tuple):
        cut = [bounded(v, limit) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            cut.append(f"…[{len(value)} items]")
        return cut
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value
