"""What a pipeline says about its model calls, as OpenTelemetry GenAI semantic-convention
attributes for the dialogue spans of its calls' traces.

Only stages that call a generative model get ``gen_ai.*`` attributes (an LLM, a speech-to-speech
model); intent engines (Lex, Dialogflow) and local rules are plain ``dialogue`` spans. The values
are read from the pipeline file once, when the service starts: nothing here runs per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# stage type -> (gen_ai.operation.name, gen_ai.provider.name)
_MODEL_STAGES = {
    "llm": ("chat", "openai"),  # OpenAI or an OpenAI-compatible server (server.address tells)
    "openai_realtime": ("chat", "openai"),
    "gemini_live": ("generate_content", "gcp.gemini"),
}
DIALOGUE_ROLES = ("dialogue", "speech_to_speech")


@dataclass(frozen=True)
class DialogueSpan:
    """Name and attributes of every dialogue span of a pipeline's calls."""

    name: str = "dialogue"
    attributes: dict[str, Any] = field(default_factory=dict)

    def plain(self) -> DialogueSpan:
        """The span of a turn no model was asked for (a greeting, a reprompt, a filler)."""
        stage = self.attributes.get("voicebridge.stage")
        return DialogueSpan("dialogue", {"voicebridge.stage": stage} if stage else {})


def dialogue_span(spec: Any) -> DialogueSpan:
    """The dialogue span of ``spec``'s calls (a ``PipelineSpec``): ``chat gpt-4.1-mini`` with
    GenAI attributes for a model, ``dialogue`` with the stage's name otherwise."""
    stage = next((s for s in spec.stages if s.cls.role in DIALOGUE_ROLES), None)
    if stage is None:
        return DialogueSpan()
    attributes: dict[str, Any] = {"voicebridge.stage": stage.name}
    known = _MODEL_STAGES.get(stage.type)
    if known is None:
        return DialogueSpan("dialogue", attributes)
    operation, provider = known
    attributes["gen_ai.operation.name"] = operation
    attributes["gen_ai.provider.name"] = provider
    attributes["gen_ai.system"] = provider  # the older name some backends still read
    model = getattr(stage.params, "model", None)
    if isinstance(model, str) and model:
        attributes["gen_ai.request.model"] = model
    base_url = getattr(stage.params, "base_url", None)
    if isinstance(base_url, str) and base_url:
        parts = urlsplit(base_url)
        if parts.hostname:
            attributes["server.address"] = parts.hostname
        if parts.port:
            attributes["server.port"] = parts.port
    name = f"{operation} {model}" if isinstance(model, str) and model else operation
    return DialogueSpan(name, attributes)


def stage_roles(spec: Any) -> dict[str, str]:
    """Each stage's name (as ``ProviderFailed.stage`` gives it) -> its role."""
    return {stage.name: stage.cls.role for stage in spec.stages}
