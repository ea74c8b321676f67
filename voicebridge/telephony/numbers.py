"""Phone numbers for outbound calls: refuse anything that is not E.164 before Plivo is asked.

A typo in a lead list should fail here, with the offending text in the message, not after a
paid API round trip. Plivo's Call API wants the country code followed by the number, without
the ``+`` (its "Make an outbound call" page: ``14157654321``), so :func:`plivo_number` drops it.
"""

from __future__ import annotations

import re
from typing import Final

# E.164: a country code that does not start with 0, at most 15 digits in all. Eight digits is
# the shortest real international number we accept (country code plus a short subscriber part).
_E164: Final = re.compile(r"\+[1-9][0-9]{7,14}")
# Spaces, dots, dashes and brackets people paste from spreadsheets; removed before checking.
_SEPARATORS: Final = re.compile(r"[\s.\-()]")


class InvalidNumber(ValueError):
    """A number that is not E.164; the message quotes it (bounded) and says what is expected."""


def e164(text: str) -> str:
    """``text`` as a canonical E.164 number (``+15551234567``), or raise :class:`InvalidNumber`.

    Separators are tolerated; a missing ``+`` is not guessed (``5551234567`` could be any
    country), nor is a leading ``00``.
    """
    shown = text[:40]
    cleaned = _SEPARATORS.sub("", text.strip())
    if not cleaned.startswith("+"):
        raise InvalidNumber(
            f"{shown!r} is not an E.164 number: start with + and the country code, "
            "e.g. +15551234567"
        )
    if not _E164.fullmatch(cleaned):
        raise InvalidNumber(
            f"{shown!r} is not an E.164 number: expected + then 8 to 15 digits, the first "
            "not 0, e.g. +15551234567"
        )
    return cleaned


def plivo_number(number: str) -> str:
    """The E.164 ``number`` as Plivo's Call API spells it: digits only, no ``+``."""
    return e164(number)[1:]
