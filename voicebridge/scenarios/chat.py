"""One answer from an OpenAI-compatible chat endpoint (streamed, as every such server does),
for the judge and the model-played caller of scenario tests."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

MAX_ANSWER_CHARS = 20_000  # a model that rambles on is cut off here


async def chat_text(
    *,
    base_url: str,
    model: str,
    api_key_env: str | None,
    messages: list[dict[str, str]],
    timeout_s: float,
    temperature: float = 0.0,
) -> str:
    """The model's whole answer; raises httpx.HTTPError on endpoint trouble."""
    key = os.environ.get(api_key_env, "") if api_key_env else ""
    headers = {"Authorization": f"Bearer {key or 'not-needed'}"}
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "temperature": temperature,
        "messages": messages,
    }
    url = base_url.rstrip("/") + "/chat/completions"
    answer = ""
    async with (
        httpx.AsyncClient(timeout=timeout_s) as client,
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
            try:
                chunk = json.loads(line[5:])
            except json.JSONDecodeError:
                raise httpx.DecodingError(f"not JSON: {line[:100]!r}") from None
            for choice in chunk.get("choices") or []:
                answer += (choice.get("delta") or {}).get("content") or ""
            if len(answer) > MAX_ANSWER_CHARS:
                break
    return answer
