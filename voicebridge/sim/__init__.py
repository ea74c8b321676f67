"""Plivo's side of a call, simulated: a caller over a real WebSocket and Plivo's playout buffer."""

from voicebridge.sim.caller import CallRecord, PlivoCaller, WireEvent
from voicebridge.sim.playout import PlayoutModel

__all__ = ["CallRecord", "PlayoutModel", "PlivoCaller", "WireEvent"]
