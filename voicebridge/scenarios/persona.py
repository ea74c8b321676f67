"""The caller played by a model: it reads the conversation so far (the agent's lines as the
caller heard them, its own as the agent understood them) and answers what it says next, which
the offline voice then speaks into the call."""

from __future__ import annotations

from collections.abc import Sequence

from voicebridge.call.context import HistoryEntry
from voicebridge.scenarios.chat import chat_text
from voicebridge.scenarios.spec import PersonaSpec

HANG_UP = "[HANG UP]"
RULES = (
    "\n\nYou are this caller, on a phone call with a business's virtual agent. Answer with only "
    "the words you say next: one or two short spoken sentences, no stage directions. When you "
    f"have nothing more to say, answer {HANG_UP} alone."
)
MAX_LINE_CHARS = 400  # a line the offline voice can say in a breath or two


def persona_messages(spec: PersonaSpec, history: Sequence[HistoryEntry]) -> list[dict[str, str]]:
    """The chat from the caller's side: the agent is the "user", the caller the "assistant"."""
    messages = [{"role": "system", "content": spec.prompt + RULES}]
    for entry in history:
        if entry.text.strip():
            role = "user" if entry.role == "agent" else "assistant"
            messages.append({"role": role, "content": entry.text})
    if len(messages) == 1:  # the agent said nothing yet: the caller opens
        messages.append({"role": "user", "content": "(the call is answered; silence)"})
    return messages


def caller_line(answer: str) -> str | None:
    """What the caller says, from the model's answer; None to hang up."""
    text = " ".join(answer.replace(HANG_UP, " ").split()).strip().strip('"')
    if HANG_UP in answer and not text:
        return None
    return text[:MAX_LINE_CHARS] or None


async def next_caller_line(spec: PersonaSpec, history: Sequence[HistoryEntry]) -> str | None:
    """Ask the persona for its next line; raises httpx.HTTPError on endpoint trouble."""
    answer = await chat_text(
        base_url=spec.base_url,
        model=spec.model,
        api_key_env=spec.api_key_env,
        timeout_s=spec.timeout_s,
        temperature=0.7,
        messages=persona_messages(spec, history),
    )
    return caller_line(answer)
