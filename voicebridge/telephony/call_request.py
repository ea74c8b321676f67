"""What an outbound call asks Plivo for, as the fields of its "Make an outbound call" API.

Kept apart from the HTTP client so the CLI, the service's ``POST /calls`` and campaigns build
the same request, and so every field name and range lives in one place, checked before sending.
Field names, defaults and ranges are Plivo's (docs/outbound.md cites the page).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from voicebridge.telephony.numbers import e164, plivo_number

# Plivo's documented ranges, in milliseconds: (low, high, default).
MACHINE_DETECTION_TIME_MS: Final = (2000, 10000, 5000)
MAXIMUM_SPEECH_LENGTH_MS: Final = (1000, 6000, 5000)
INITIAL_SILENCE_MS: Final = (2000, 10000, 4500)

Method = Literal["GET", "POST"]


def _in_range(name: str, value: int, bounds: tuple[int, int, int]) -> None:
    low, high, _ = bounds
    if not low <= value <= high:
        raise ValueError(f"{name} must be {low} to {high} ms (Plivo's range), not {value}")


def _http_url(name: str, url: str | None) -> None:
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError(f"{name} must be an http(s) URL, not {url[:80]!r}")


@dataclass(frozen=True)
class MachineDetection:
    """Plivo's answering-machine detection for one call.

    ``mode`` ``"true"`` reports the result (asynchronously to ``url`` when given), ``"hangup"``
    makes Plivo end the call on a machine. Times are Plivo's defaults unless set.
    """

    mode: Literal["true", "hangup"] = "true"
    time_ms: int = MACHINE_DETECTION_TIME_MS[2]
    maximum_speech_length_ms: int = MAXIMUM_SPEECH_LENGTH_MS[2]
    initial_silence_ms: int = INITIAL_SILENCE_MS[2]
    url: str | None = None
    method: Method = "POST"

    def __post_init__(self) -> None:
        if self.mode not in ("true", "hangup"):
            raise ValueError(f"machine_detection must be true or hangup, not {self.mode!r}")
        _in_range("machine_detection_time", self.time_ms, MACHINE_DETECTION_TIME_MS)
        _in_range(
            "machine_detection_maximum_speech_length",
            self.maximum_speech_length_ms,
            MAXIMUM_SPEECH_LENGTH_MS,
        )
        _in_range("machine_detection_initial_silence", self.initial_silence_ms, INITIAL_SILENCE_MS)
        _http_url("machine_detection_url", self.url)

    def fields(self) -> dict[str, str]:
        out = {
            "machine_detection": self.mode,
            "machine_detection_time": str(self.time_ms),
            "machine_detection_maximum_speech_length": str(self.maximum_speech_length_ms),
            "machine_detection_initial_silence": str(self.initial_silence_ms),
        }
        if self.url:
            out["machine_detection_url"] = self.url
            out["machine_detection_method"] = self.method
        return out


@dataclass(frozen=True)
class CallRequest:
    """One outbound call: numbers in E.164 (checked here), the answer URL Plivo fetches once
    the callee picks up, and the optional hang-up callback and machine detection."""

    to: str
    from_: str
    answer_url: str
    answer_method: Method = "POST"
    hangup_url: str | None = None
    hangup_method: Method = "POST"
    machine_detection: MachineDetection | None = None
    time_limit_s: int | None = None

    def __post_init__(self) -> None:
        # Canonical E.164 from here on; InvalidNumber (with the text shown) otherwise.
        object.__setattr__(self, "to", e164(self.to))
        object.__setattr__(self, "from_", e164(self.from_))
        if not self.answer_url:
            raise ValueError("answer_url is required")
        _http_url("answer_url", self.answer_url)
        _http_url("hangup_url", self.hangup_url)
        for name in ("answer_method", "hangup_method"):
            if getattr(self, name) not in ("GET", "POST"):
                raise ValueError(f"{name} must be GET or POST, not {getattr(self, name)!r}")
        if self.time_limit_s is not None and self.time_limit_s < 1:
            raise ValueError(f"time_limit must be at least 1 s, not {self.time_limit_s}")

    def fields(self) -> dict[str, str]:
        """The request body Plivo documents (sent as JSON, like Plivo's own SDKs)."""
        out = {
            "from": plivo_number(self.from_),
            "to": plivo_number(self.to),
            "answer_url": self.answer_url,
            "answer_method": self.answer_method,
        }
        if self.hangup_url:
            out["hangup_url"] = self.hangup_url
            out["hangup_method"] = self.hangup_method
        if self.time_limit_s is not None:
            out["time_limit"] = str(self.time_limit_s)
        if self.machine_detection is not None:
            out.update(self.machine_detection.fields())
        return out


@dataclass(frozen=True)
class CallCreated:
    """Plivo's answer to a created call: ``request_uuid`` identifies it until it is answered
    (the answer URL's ``RequestUUID``; the call then gets its own ``CallUUID``)."""

    request_uuid: str
    message: str
    api_id: str | None = None
