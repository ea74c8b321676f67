"""Per-pipeline session options: the ``session:`` section of a pipeline YAML.

They govern how a call behaves around the stages: barge-in, pacing of agent audio, reprompts and
limits. Every field has a documented default, so most pipelines never write this section.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_BACKCHANNELS = ("uh-huh", "uh huh", "yeah", "okay", "ok", "mm-hmm", "mhm", "right")


class BargeInOptions(BaseModel):
    """When caller speech cuts the agent off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    guard_ms: int = Field(200, ge=0, le=5000, description="speech must last this long to interrupt")
    min_words: int = Field(0, ge=0, description="also wait for an interim transcript this long")
    backchannels: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BACKCHANNELS),
        description="short acknowledgements that never interrupt",
    )
    dtmf_interrupts: bool = True
    false_interruption_ms: int = Field(
        1500, ge=0, description="no words within this window after a clear: resume the agent"
    )
    resume_after_false_interruption: bool = True


class SessionOptions(BaseModel):
    """The ``session:`` section of a pipeline file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    barge_in: BargeInOptions = Field(default_factory=lambda: BargeInOptions())
    max_lead_ms: int = Field(
        1000, ge=100, description="unplayed agent audio kept buffered at Plivo at most"
    )
    chunk_ms: int = Field(200, ge=20, le=2000, description="size of each playAudio message")
    idle_reprompt_s: float = Field(0, ge=0, description="reprompt after this silence; 0 = never")
    idle_reprompts: int = Field(2, ge=0, description="reprompts before the agent says goodbye")
    reprompt_text: str = "Are you still there?"
    idle_goodbye_text: str = "I haven't heard from you, so I'll end the call now. Goodbye."
    max_call_s: float = Field(0, ge=0, description="end the call after this long; 0 = no limit")
    fallback_text: str = "Sorry, something went wrong on my side. Please call again later."
