"""A model as the judge of a call: the transcript (what each side heard) and the criteria go to
an OpenAI-compatible chat endpoint, which answers a verdict and its reasons as JSON.

Deterministic scenarios need none of this; it is for what expectations cannot express ("the
agent was polite", "it never promised a refund")."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from voicebridge.scenarios.spec import JudgeSpec

MAX_ANSWER_CHARS = 20_000  # a judge that rambles on is cut off here

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
    body = {
        "model": spec.model,
        "stream": True,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": f"Criteria:\n{criteria}\n\nTranscript:\n{transcript(history)}",
            },
        ],
    }
    key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
    headers = {"Authorization": f"Bearer {key or 'not-needed'}"}
    url = spec.base_url.rstrip("/") + "/chat/completions"
    answer = ""
    async with (
        httpx.AsyncClient(timeout=spec.timeout_s) as client,
        client.stream("POST", url, json=body, headers=headers) as response,
    ):
        if response.status_code != 200:
            await response.aread()
            raise httpx.HTTPStatusError(
                f"{response.status_code} {response.text[:200]}",
                request=response.request,
                response=response,
            )
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            for choice in chunk.get("choices") or []:
                answer += (choice.get("delta") or {}).get("content") or ""
            if len(answer) > MAX_ANSWER_CHARS:
                break
    return parse_verdict(answer)
