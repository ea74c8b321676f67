"""A model as the judge of a call: the transcript (what each side heard) and the criteria go to
an OpenAI-compatible chat endpoint, which answers a verdict and its reasons as JSON.

Deterministic scenarios need none of this; it is for what expectations cannot express ("the
agent was polite", "it never promised a refund")."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from voicebridge.scenarios.chat import chat_text
from voicebridge.scenarios.spec import JudgeSpec

SYSTEM = (
    "You grade a phone call between a caller and a virtual agent against criteria. "
    "Read the transcript (each line is what the other side heard) and decide whether EVERY "
    'criterion is met. Answer with JSON only: {"pass": true or false, "reasons": "one or two '
    'sentences naming any criterion not met"}.'
)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: str


def transcript(history: Sequence[dict[str, Any]]) -> str:
    """The call as lines ``caller: ...`` / ``agent: ...`` (a cut-off reply is marked)."""
    lines = []
    for entry in history:
        cut = " [interrupted]" if entry.get("interrupted") else ""
        lines.append(f"{entry.get('role')}: {entry.get('text')}{cut}")
    return "\n".join(lines)


def parse_verdict(answer: str) -> Verdict:
    """The JSON object in the judge's answer (models wrap it in prose or code fences)."""
    found = re.search(r"\{.*\}", answer, re.S)
    try:
        data = json.loads(found.group(0)) if found else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("pass"), bool):
        raise ValueError(f"the judge's answer has no verdict: {answer[:200]!r}")
    return Verdict(data["pass"], " ".join(str(data.get("reasons", "")).split())[:500])


async def judge_call(spec: JudgeSpec, history: Sequence[dict[str, Any]]) -> Verdict:
    """Ask the judge; raises ValueError (no verdict) or httpx.HTTPError (endpoint trouble)."""
    criteria = "\n".join(f"- {c}" for c in spec.criteria)
    answer = await chat_text(
        base_url=spec.base_url,
        model=spec.model,
        api_key_env=spec.api_key_env,
        timeout_s=spec.timeout_s,
        messages=[
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": f"Criteria:\n{criteria}\n\nTranscript:\n{transcript(history)}",
            },
        ],
    )
    return parse_verdict(answer)
