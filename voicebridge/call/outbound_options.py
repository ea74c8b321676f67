"""The ``outbound:`` section of a pipeline YAML: what an outbound call does about machines.

Plivo's machine detection (its parameters, with Plivo's own defaults and ranges) runs on every
call the service places while this section is present; its result then decides: a person
(``on_human: continue``) talks with the agent, a machine gets the voicemail after its beep
(``on_machine: voicemail``) or is hung up on (``on_machine: hangup``). Until the verdict the
agent's greeting is held (``greeting: wait_for_verdict``): a machine never hears it, and a person
who says "Hello?" first is answered as soon as they pause.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MachineDetectionOptions(BaseModel):
    """Plivo's ``machine_detection_*`` parameters (docs/outbound.md cites Plivo's page)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time_ms: int = Field(5000, ge=2000, le=10000, description="how long Plivo listens")
    maximum_speech_length_ms: int = Field(
        5000, ge=1000, le=6000, description="speech longer than this is a machine's greeting"
    )
    initial_silence_ms: int = Field(
        4500, ge=2000, le=10000, description="silence after answering longer than this: machine"
    )


class OutboundOptions(BaseModel):
    """How an outbound call treats a machine, and the voicemail it leaves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    machine_detection: MachineDetectionOptions = Field(default_factory=MachineDetectionOptions)
    on_machine: Literal["voicemail", "hangup"] = "hangup"
    on_human: Literal["continue"] = "continue"
    voicemail: str = Field("", description="spoken once after the beep; {name} placeholders")
    beep_wait_s: float = Field(
        20.0, gt=0, le=120, description="longest wait for the beep before the silence fallback"
    )
    silence_s: float = Field(
        2.5, gt=0, le=30, description="greeting over: this long without sound after it"
    )
    greeting: Literal["wait_for_verdict", "speak_at_once"] = Field(
        "wait_for_verdict",
        description="hold the agent's first words until Plivo's verdict, the callee's hello "
        "or greeting_wait_s; speak_at_once: as on an inbound call",
    )
    greeting_wait_s: float | None = Field(
        None,
        gt=0,
        le=30,
        description="longest hold without a verdict (default: machine_detection.time_ms + 1 s)",
    )
    hello_max_s: float = Field(
        2.0,
        gt=0,
        le=10,
        description="callee speech this short, then a pause, is a person's hello: speak",
    )

    @property
    def hold_s(self) -> float:
        """How long the greeting is held at most without a verdict."""
        if self.greeting_wait_s is not None:
            return self.greeting_wait_s
        return self.machine_detection.time_ms / 1000.0 + 1.0

    @model_validator(mode="after")
    def _voicemail_text(self) -> OutboundOptions:
        if self.on_machine == "voicemail" and not self.voicemail.strip():
            raise ValueError("on_machine: voicemail needs the voicemail text (voicemail: ...)")
        return self
