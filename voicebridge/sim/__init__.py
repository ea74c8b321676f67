"""Plivo's side of a call, simulated: a caller over a real WebSocket and Plivo's playout buffer.

The names below load on first use: the ``voicebridge`` command imports ``voicebridge.sim.cli``
to build its parser, and ``--help`` should not wait for numpy and scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voicebridge.sim.caller import CallRecord, PlivoCaller, WireEvent
    from voicebridge.sim.playout import PlayoutModel

__all__ = ["CallRecord", "PlayoutModel", "PlivoCaller", "WireEvent"]

_HOMES = {
    "CallRecord": "voicebridge.sim.caller",
    "PlivoCaller": "voicebridge.sim.caller",
    "WireEvent": "voicebridge.sim.caller",
    "PlayoutModel": "voicebridge.sim.playout",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'voicebridge.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
