"""A document as the bytes that are signed, spooled and sent, within ``max_document_bytes``.

A long call can say more than a receiver wants in one request. When the JSON is too large, the
longest of the document's lists (history, turns, barge-ins, errors) loses entries from its middle
(the start and the end of a call say the most) until it fits; ``omitted`` counts what was cut.
"""

from __future__ import annotations

import json
from typing import Any, Final

_LISTS: Final = ("history", "turns", "barge_ins", "errors")


def dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def encode(document: dict[str, Any], max_bytes: int) -> bytes:
    """``document`` as compact UTF-8 JSON of at most ``max_bytes`` (lists cut as needed).

    Raises ValueError when even with every list empty it is too large (cannot happen with the
    reporter's own bounds and the smallest allowed ``max_document_bytes``)."""
    body = dumps(document)
    if len(body) <= max_bytes:
        return body
    doc = dict(document)
    omitted: dict[str, int] = dict(doc.get("omitted") or {})
    while len(body) > max_bytes:
        name = max(_LISTS, key=lambda n: len(doc.get(n) or []))
        items = list(doc.get(name) or [])
        if not items:
            raise ValueError(f"a webhook document of {len(body)} bytes with its lists empty")
        cut = max(1, len(items) // 4)
        middle = len(items) // 2
        start = max(0, middle - cut // 2)
        doc[name] = items[:start] + items[start + cut :]
        omitted[name] = omitted.get(name, 0) + cut
        doc["omitted"] = omitted
        body = dumps(doc)
    return body
