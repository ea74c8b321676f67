"""At service start, one throwaway Realtime session: does OpenAI take this key, model and setup?

A wrong key, a model the account cannot use or a voice the model does not have would otherwise
surface on every call, as a call that opens and says nothing. One session configured exactly as
the calls will be, and one out-of-band, one-token text response (a model without access fails
its first response, not its connection), answer all of that before the first call, for the cost
of a token.
"""

from __future__ import annotations

from voicebridge.clock import MonotonicClock, wait_for
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.stage import StageError
from voicebridge.stages.dialogue.toolbox import Toolbox
from voicebridge.stages.openai_client import ClientLease, provider_name
from voicebridge.stages.realtime.model_audio import MULAW_8K
from voicebridge.stages.realtime.openai_link import RealtimeLink, event_error
from voicebridge.stages.realtime.openai_session import (
    OpenAIRealtimeParams,
    probe_response,
    session_config,
)

_HINTS = {
    "auth": "check the key in {env}",
    "invalid": "check model, voice, input_transcription and the other settings",
    "quota": "the account is out of quota or rate-limited",
}


async def verify_session(stage: str, params: OpenAIRealtimeParams) -> None:
    """Raise StageError, saying what to fix, when OpenAI refuses this stage's setup."""
    provider = provider_name(params.base_url)
    clock = MonotonicClock()
    lease = ClientLease(params)
    link = RealtimeLink(stage, provider, clock)
    session = session_config(
        params, MULAW_8K, Toolbox(params, stage).functions(), params.instruction_text()
    )
    try:
        client = await lease.acquire(stage)
        await link.open(client, params.model, session, params.connect_timeout_s)
        link.send(probe_response())
        await wait_for(clock, _answered(link, stage, provider), params.timeout_s)
    except ProviderError as error:
        hint = _HINTS.get(error.kind, "").format(env=params.api_key_env)
        raise StageError(
            f"{stage}: {provider} refused the session for model {params.model!r} "
            f"({error.kind}): {error.provider_message}" + (f"; {hint}" if hint else "")
        ) from error
    except TimeoutError as exc:
        raise StageError(
            f"{stage}: {provider} did not answer a test request within {params.timeout_s:g} s"
        ) from exc
    finally:
        await link.close()
        await lease.release()


async def _answered(link: RealtimeLink, stage: str, provider: str) -> None:
    """Wait for the probe's ``response.done``; its failure, or an error event, raises."""
    while True:
        event = await link.recv()
        kind = event.get("type")
        if kind == "error":
            raise event_error(stage, provider, event.get("error"))
        if kind == "response.done":
            response = event.get("response") or {}
            if response.get("status") == "failed":
                details = response.get("status_details") or {}
                raise event_error(stage, provider, details.get("error"))
            return
