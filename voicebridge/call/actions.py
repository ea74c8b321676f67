"""What the call core asks its driver to do: the only way its decisions leave it.

The core never awaits, sends or spawns; each input returns a list of these (and of
``CallEvent``s, in the order they happened). The driver (``voicebridge.session``) carries them
out against the socket, the pipeline and Plivo's REST API.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicebridge.call.context import CallInfo
from voicebridge.frames import Frame, Hangup, Transfer


@dataclass(frozen=True, slots=True)
class Send:
    """Put one text message on the WebSocket (``playAudio``, ``checkpoint``, ``clearAudio``)."""

    text: str


@dataclass(frozen=True, slots=True)
class Push:
    """Feed a frame to the pipeline: at its head, or (``role``) to the first stage of that
    role, past stages that may be busy (a filler must reach the speaker while the dialogue is
    stuck)."""

    frame: Frame
    role: str | None = None


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Cancel the pipeline's work for every turn up to ``stale_through`` (barge-in)."""

    stale_through: int


@dataclass(frozen=True, slots=True)
class StartPipeline:
    """``start`` arrived: build and start the pipeline for this call, then report back with
    ``CallCore.pipeline_started`` (or ``pipeline_failed``)."""

    info: CallInfo


@dataclass(frozen=True, slots=True)
class ControlCall:
    """Hang up or transfer through Plivo's REST API, then report back with
    ``CallCore.control_done``."""

    action: Hangup | Transfer


@dataclass(frozen=True, slots=True)
class Close:
    """End the call: stop the pipeline and close the socket with ``code``."""

    reason: str
    code: int
    close_reason: str


@dataclass(frozen=True, slots=True)
class SaveState:
    """Something worth keeping for a dropped-call resume happened (a piece heard, a turn
    ended, the caller spoke)."""


Action = Send | Push | Interrupt | StartPipeline | ControlCall | Close | SaveState
