"""The ``lex`` dialogue: each final transcript goes to an Amazon Lex V2 bot (``RecognizeText``),
and the bot's messages become the agent's reply.

One Lex session per call: its id is the call id (reduced to the characters and length Lex allows),
so the bot keeps its slots and context for the whole call. The call's Plivo extra headers (and the
``session_attributes`` parameter) are sent as session attributes with the first request, where a
Lambda code hook can read them. When the bot closes the conversation (``dialogAction`` Close with
the intent Fulfilled or Failed) the agent hangs up after its last words have played, unless
``end_on_close`` is ``continue``.

``RecognizeText`` moves the bot's dialogue on, so it is not blindly repeated: only throttling and
failures to connect (the request never reached Lex) are retried. The blocking boto3 call runs in
the process-wide ``lex`` worker pool; a barge-in cancels the wait and the reply is dropped.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Literal

from botocore.exceptions import ClientError
from pydantic import Field, field_validator

from voicebridge.frames import AgentText, AudioIn, CallStarted, Dtmf, Frame, Hangup, Transcript
from voicebridge.runtime.providers import ProviderError
from voicebridge.runtime.resilience import ResilienceParams, stage_guard
from voicebridge.runtime.stage import Stage, StageParams
from voicebridge.stages.aws_common import (
    ClientSettings,
    empty_is_default,
    get_client,
    is_connect_failure,
    run_guarded,
    ssml_to_text,
)
from voicebridge.text import split_sentences

POOL_NAME = "lex"
PROVIDER = "Amazon Lex"
MAX_TEXT_CHARS = 1024  # RecognizeText's limit on the input text
_SESSION_CHARS = re.compile(r"[^0-9A-Za-z._:-]")


class LexParams(StageParams):
    bot_id: str = Field(
        pattern=r"^[0-9A-Za-z]+$", max_length=100, description="the bot's id (10 characters)"
    )
    bot_alias_id: str = Field(
        "TSTALIASID",
        pattern=r"^[0-9A-Za-z]+$",
        max_length=100,
        description="alias to talk to; TSTALIASID is the draft version's test alias",
    )
    locale_id: str = Field("en_US", min_length=1, description="bot locale, e.g. en_US, en_GB")
    region: str | None = Field(None, description="default: AWS_REGION / AWS_DEFAULT_REGION")
    endpoint_url: str | None = Field(None, description="override the Lex runtime endpoint")
    _empty_endpoint = field_validator("endpoint_url", mode="before")(empty_is_default)
    greeting: str | None = Field(None, description="said when the call starts, without Lex")
    start_text: str | None = Field(
        None, description="sent to the bot when the call starts; its answer is the greeting"
    )
    end_on_close: Literal["hangup", "continue"] = Field(
        "hangup", description="when the bot closes the intent (Fulfilled/Failed)"
    )
    ssml: Literal["keep", "strip"] = Field(
        "keep", description="SSML messages: keep for Polly, strip for speakers that read text"
    )
    session_attributes: dict[str, str] = Field(
        default_factory=dict, description="sent with the first request"
    )
    header_attributes: bool = Field(
        True, description="also send the call's Plivo extra headers as session attributes"
    )
    dtmf_submit: str | None = Field(
        "#",
        pattern=r"^[0-9*#]$",
        description="keypad digits are sent as text when this is pressed (null: ignore the keypad)",
    )
    connect_timeout_s: float = Field(3.0, gt=0, le=60, description="per request")
    read_timeout_s: float = Field(10.0, gt=0, le=120, description="per request")
    max_attempts: int = Field(3, ge=1, le=6, description="tries on throttling / connect failure")
    retry_backoff_s: float = Field(0.2, ge=0, le=5, description="first retry delay, then doubled")
    workers: int = Field(16, ge=1, le=256, description="requests in flight per process")
    resilience: ResilienceParams = Field(
        default_factory=lambda: ResilienceParams(),
        description="first-byte deadline, circuit breaker; retries override max_attempts",
    )


def lex_session_id(call_id: str) -> str:
    """A Lex session id for a call: 2-100 characters of ``[0-9A-Za-z._:-]``."""
    session = _SESSION_CHARS.sub("-", call_id)[:100]
    return session if len(session) >= 2 else f"call-{session or 'unknown'}"


def _recognize(settings: ClientSettings, request: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = get_client(settings).recognize_text(**request)
    return response


class LexDialogue(Stage):
    type_name = "lex"
    role = "dialogue"
    passthrough = (AudioIn,)  # caller audio goes around this stage
    description = "Answers the caller with an Amazon Lex V2 bot (RecognizeText, one session/call)."
    Params = LexParams

    def __init__(self, params: StageParams | None = None, /, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._settings: ClientSettings | None = None
        p: LexParams = self.params
        self.guard = stage_guard(
            self.name,
            PROVIDER,
            f"{p.region or 'default-region'} {p.endpoint_url or ''} {p.bot_id}",
            p.resilience,
            retries=p.max_attempts - 1,
            backoff_s=p.retry_backoff_s,
            retry_if=lambda error: _retryable(error.__cause__ or error, error),
        )
        self._session_id = ""
        self._attributes_sent = False
        self._digits = ""
        self._closed = False
        self._headers: dict[str, str] = {}

    @staticmethod
    def _client_settings(p: LexParams) -> ClientSettings:
        return ClientSettings.for_stage("lexv2-runtime", p)

    @classmethod
    async def preload(cls, params: StageParams) -> None:
        """Build the client at start-up (loading the service model takes tens of ms)."""
        assert isinstance(params, LexParams)
        await asyncio.to_thread(get_client, cls._client_settings(params))

    async def start(self) -> None:
        self._settings = self._client_settings(self.params)
        if self.ctx.info.call_id:
            self._session_id = lex_session_id(self.ctx.info.call_id)

    async def process(self, frame: Frame) -> None:
        await self.emit(frame)
        p: LexParams = self.params
        if self._closed and p.end_on_close == "hangup":
            return  # the bot ended the conversation; the call is hanging up
        if isinstance(frame, CallStarted):
            if not self._session_id and frame.call_id:
                self._session_id = lex_session_id(frame.call_id)
            self._headers = dict(frame.extra_headers)
            if frame.resumed:
                return  # the Lex session (keyed by call id) is still where it was
            if p.greeting:
                await self._say([("PlainText", p.greeting)])
            if p.start_text:
                await self._ask(p.start_text)
        elif isinstance(frame, Transcript) and frame.final and frame.text.strip():
            await self._ask(frame.text.strip())
        elif isinstance(frame, Dtmf) and p.dtmf_submit:
            if frame.digit == p.dtmf_submit:
                digits, self._digits = self._digits, ""
                if digits:
                    await self._ask(digits)
            else:
                self._digits = (self._digits + frame.digit)[-64:]

    def _session_attributes(self) -> dict[str, str]:
        p: LexParams = self.params
        attributes = dict(p.session_attributes)
        if p.header_attributes:
            attributes.update(self.ctx.info.extra_headers or self._headers)
        return attributes

    async def _ask(self, text: str) -> None:
        """One RecognizeText request; the bot's messages are spoken as a new turn."""
        p: LexParams = self.params
        request: dict[str, Any] = {
            "botId": p.bot_id,
            "botAliasId": p.bot_alias_id,
            "localeId": p.locale_id,
            "sessionId": self._session_id or lex_session_id(self.ctx.info.call_id),
            "text": text[:MAX_TEXT_CHARS],
        }
        # Attributes go once: later requests leave the session state Lex keeps untouched.
        attributes = self._session_attributes() if not self._attributes_sent else {}
        if attributes:
            request["sessionState"] = {"sessionAttributes": attributes}
        self.begin_turn()  # from here a barge-in cancels this request
        started = time.perf_counter()
        response = await run_guarded(
            POOL_NAME,
            _recognize,
            self._settings or self._client_settings(p),
            request,
            guard=self.guard,
            stage=self.name,
            provider=PROVIDER,
            workers=p.workers,
            clock=self.ctx.clock,
            log=self.log,
        )
        self._attributes_sent = True
        messages = [
            (str(m.get("contentType", "")), _message_text(m))
            for m in response.get("messages") or []
        ]
        state = response.get("sessionState") or {}
        action = (state.get("dialogAction") or {}).get("type")
        intent = state.get("intent") or {}
        closing = action == "Close" and intent.get("state") in ("Fulfilled", "Failed")
        said = await self._say(messages, started=started)
        self.log.info(
            "lex_reply",
            intent=intent.get("name"),
            intent_state=intent.get("state"),
            dialog_action=action,
            messages=len(messages),
            said=said,
        )
        if closing and p.end_on_close == "hangup":
            self._closed = True
            await self.emit(Hangup(reason=f"lex_{str(intent.get('state')).lower()}"))

    async def _say(self, messages: list[tuple[str, str]], started: float | None = None) -> int:
        """Emit the messages as one turn, sentence by sentence; returns the pieces said."""
        pieces: list[str] = []
        for content_type, text in messages:
            if not text.strip():
                continue
            if content_type == "SSML":
                if self.params.ssml == "keep":
                    pieces.append(text.strip())
                    continue
                text = ssml_to_text(text)
            pieces.extend(split_sentences(text))
        if not pieces:
            return 0
        turn = self.active_turn if self.active_turn is not None else self.begin_turn()
        if started is not None:
            self.log.info(
                "dialogue_first_text", ms=round(1000 * (time.perf_counter() - started)), turn=turn
            )
        for index, piece in enumerate(pieces):
            await self.emit(AgentText(piece, turn=turn, last=index == len(pieces) - 1))
        return len(pieces)


def _message_text(message: dict[str, Any]) -> str:
    """The speakable text of a Lex message: PlainText/SSML content, an image card's title."""
    content_type = message.get("contentType")
    if content_type in ("PlainText", "SSML"):
        return str(message.get("content") or "")
    if content_type == "ImageResponseCard":
        card = message.get("imageResponseCard") or {}
        return str(card.get("title") or "")
    return ""  # CustomPayload is for the application, not for the caller's ear


def _retryable(exc: BaseException, error: ProviderError) -> bool:
    """Retry only what cannot have reached the bot: throttling and failed connections."""
    if isinstance(exc, ClientError):
        return error.kind == "quota"
    return is_connect_failure(exc)
