"""Per-pipeline session options: the ``session:`` section of a pipeline YAML.

They govern how a call behaves around the stages: barge-in, pacing of agent audio, reprompts and
limits. Every field has a documented default, so most pipelines never write this section.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class ReplyOptions(BaseModel):
    """What the caller hears while a reply is late, and when a failing provider ends the call.

    Times run from the end of the caller's turn (their final transcript) to the first agent
    audio sent for it. With the defaults the caller never hears more than ``filler_after_ms``
    (plus the speaker's own latency) of silence until ``reply_timeout_ms``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    filler_after_ms: int | None = Field(
        1500, ge=100, le=60_000, description="speak a filler after this silence; null = never"
    )
    filler_texts: list[str] = Field(
        default_factory=lambda: ["One moment.", "Still working on it."],
        description="fillers, one after another within a turn (not kept in the history)",
    )
    max_fillers: int = Field(2, ge=0, le=10, description="fillers at most per caller turn")
    reply_timeout_ms: int | None = Field(
        6000,
        ge=500,
        le=120_000,
        description="no reply by then: drop the late one, speak fallback_text; null = wait",
    )
    give_up_after: int = Field(
        3, ge=1, le=100, description="failed turns in a row (errors, timeouts) that end the call"
    )
    give_up_when_circuit_open: bool = Field(
        True, description="end the call at once when a provider's circuit breaker is open"
    )
    goodbye_text: str = Field(
        "Sorry, I'm having technical trouble and can't help right now. Please call back later. "
        "Goodbye.",
        description="said before the call ends because a provider stays down",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ReplyOptions:
        if self.filler_after_ms is not None and self.max_fillers and not self.filler_texts:
            raise ValueError("filler_texts must not be empty while fillers are enabled")
        if any(not text.strip() for text in self.filler_texts):
            raise ValueError("filler_texts must not contain empty lines")
        if (
            self.filler_after_ms is not None
            and self.reply_timeout_ms is not None
            and self.reply_timeout_ms <= self.filler_after_ms
        ):
            raise ValueError("reply_timeout_ms must be longer than filler_after_ms")
        return self


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
    replies: ReplyOptions = Field(default_factory=lambda: ReplyOptions())
    normalise_digits: bool = Field(
        True,
        description="final transcripts reach the dialogue with spoken digit runs as digits "
        "('five five one two' -> '5512'), whatever the transcriber",
    )
